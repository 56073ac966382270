//! Usage events as a plugin sees them: views into the columnar `event-batch` the host passed in,
//! read on access.
//!
//! [`Events`] checks a batch once, in one pass over its columns (every offset, name index, kind
//! and scale), without allocating per event; after that every accessor of an [`EventRef`] is a
//! few loads from the batch and cannot fail. Nothing is decoded that the plugin does not read: a
//! metric that reads one number property of each event pays for one number per event, not for
//! the event's id, customer, code and every property. A malformed batch is an `invalid-input`
//! error, never a panic.

use std::borrow::Cow;
use std::cell::Cell;

use crate::{Decimal, EventError, EventFields, PluginError, Result, parse_decimal};

/// The kinds of property values in an `event-batch` (see `wit/plugin.wit`).
#[doc(hidden)]
pub mod kind {
    pub const STR: u8 = 0;
    pub const NUM: u8 = 1;
    pub const NEG_NUM: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const TRUE: u8 = 4;
    pub const NULL: u8 = 5;
    pub const OTHER: u8 = 6;
}

/// The bits of an `event-batch`'s `fields` word: which parts a metric may leave out it holds.
#[doc(hidden)]
pub mod field {
    pub const IDS: u32 = 1;
    pub const CUSTOMERS: u32 = 2;
    pub const CODES: u32 = 4;
    pub const ALL: u32 = IDS | CUSTOMERS | CODES;
}

/// What of each event a metric reads ([`crate::Metric::reads`]): the host passes that and
/// nothing else, so a metric neither pays for nor sees what it does not use. Timestamps are
/// always passed.
///
/// ```
/// use ratecard_plugin::Reads;
///
/// // A metric that sums `bytes` per customer:
/// let reads = Reads::timestamps().customers().property("bytes");
/// assert!(reads.reads_property("bytes") && !reads.reads_property("region"));
/// ```
///
/// What is not read looks empty: [`EventRef::id`], [`EventRef::customer`] and
/// [`EventRef::code`] are `""`, and a property not read is missing. Test a metric on
/// `Batch::with_reads(&events, &metric.reads())`, which leaves out what the host leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads {
    ids: bool,
    customers: bool,
    codes: bool,
    /// `None`: every property.
    properties: Option<Vec<String>>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads::everything()
    }
}

impl Reads {
    /// Every part of every event: ids, customers, codes and all properties.
    pub fn everything() -> Reads {
        Reads {
            ids: true,
            customers: true,
            codes: true,
            properties: None,
        }
    }

    /// Timestamps only; add what the metric reads.
    pub fn timestamps() -> Reads {
        Reads {
            ids: false,
            customers: false,
            codes: false,
            properties: Some(Vec::new()),
        }
    }

    pub fn ids(self) -> Reads {
        Reads { ids: true, ..self }
    }

    pub fn customers(self) -> Reads {
        Reads {
            customers: true,
            ..self
        }
    }

    pub fn codes(self) -> Reads {
        Reads {
            codes: true,
            ..self
        }
    }

    /// Property `name` as well.
    pub fn property(mut self, name: &str) -> Reads {
        if let Some(names) = &mut self.properties
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
        self
    }

    /// Every property.
    pub fn all_properties(self) -> Reads {
        Reads {
            properties: None,
            ..self
        }
    }

    pub fn reads_property(&self, name: &str) -> bool {
        self.properties
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// The `fields` word of a batch written for these reads.
    fn fields(&self) -> u32 {
        (self.ids as u32 * field::IDS)
            | (self.customers as u32 * field::CUSTOMERS)
            | (self.codes as u32 * field::CODES)
    }
}

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

fn malformed(what: &str) -> PluginError {
    PluginError::InvalidInput(format!("malformed event batch: {what}"))
}

/// The number columns of a batch: low 64 bits, high 32 bits and scale of each magnitude.
type NumberColumns<'a> = (&'a [u8], U32s<'a>, &'a [u8]);

/// Number `slot` of the number columns.
#[inline]
fn number_at((los, his, scales): NumberColumns<'_>, slot: usize, negative: bool) -> Decimal {
    let scale = scales.get(slot).copied().unwrap_or_default();
    number(u64_at(los, slot), his.at(slot), scale, negative)
}

/// The number of the contract: ±(`hi` × 2^64 + `lo`) / 10^`scale` (`scale` ≤ 28, checked with
/// the batch).
#[inline]
fn number(lo: u64, hi: u32, scale: u8, negative: bool) -> Decimal {
    Decimal::from_parts(lo as u32, (lo >> 32) as u32, hi, negative, scale.into())
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

/// A column of little-endian `u32`s.
#[derive(Clone, Copy, Debug, Default)]
struct U32s<'a>(&'a [u8]);

impl U32s<'_> {
    fn len(self) -> usize {
        self.0.len() / 4
    }

    /// Item `i`, 0 past the end (callers index within checked bounds).
    #[inline]
    fn at(self, i: usize) -> u32 {
        match self.0.get(i * 4..i * 4 + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    /// `(start, end)` of item `i` of a column of ends: items are back to back from 0.
    #[inline]
    fn range(self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.at(i - 1) };
        (start as usize, self.at(i) as usize)
    }

    fn iter(self) -> impl Iterator<Item = u32> {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[inline]
fn u64_at(column: &[u8], i: usize) -> u64 {
    match column.get(i * 8..i * 8 + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

/// Splits the buffer into its columns (see `wit/plugin.wit`), in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, width: usize) -> Result<&'a [u8]> {
        let len = n
            .checked_mul(width)
            .filter(|len| *len <= self.bytes.len())
            .ok_or_else(|| malformed("the buffer is shorter than its counts"))?;
        let (column, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(column)
    }

    fn u32s(&mut self, n: usize) -> Result<U32s<'a>> {
        self.take(n, 4).map(U32s)
    }

    fn text(&mut self, n: usize) -> Result<&'a str> {
        std::str::from_utf8(self.take(n, 1)?).map_err(|_| malformed("text is not UTF-8"))
    }
}

/// `check_ends(ends, text).is_ok()`, without a branch per item.
fn ends_are_well_formed(ends: U32s<'_>, text: &str) -> bool {
    let (mut bad, mut start) = (false, 0u32);
    for end in ends.iter() {
        // A byte past the end of `text` reads as 0, a boundary: an end past the text is caught
        // by the ends being non-decreasing up to the last, which must be inside the text.
        let next = text.as_bytes().get(end as usize).copied().unwrap_or(0);
        bad |= (end < start) | ((next as i8) < -0x40);
        start = end;
    }
    !bad && start as usize <= text.len()
}

/// Checks a column of text ends: non-decreasing, inside `text`, on character boundaries.
fn check_ends(ends: U32s<'_>, text: &str) -> Result<()> {
    let mut start = 0;
    for end in ends.iter() {
        let end = end as usize;
        if end < start || !text.is_char_boundary(end) {
            return Err(malformed("a text item is out of its column"));
        }
        start = end;
    }
    Ok(())
}

/// `a == b` for short names without a call to `memcmp` (in wasm, a byte loop): a name of 4
/// to 16 bytes is two overlapping loads from each side.
#[inline]
pub(crate) fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
        let mut word = [0; N];
        word.copy_from_slice(&bytes[at..at + N]);
        word
    }
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
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
    n_events: usize,
    /// Which parts of the events the batch holds ([`field`] bits).
    fields: u32,
    timestamps_ms: &'a [u8],
    number_los: &'a [u8],
    number_his: U32s<'a>,
    name_ends: U32s<'a>,
    id_ends: U32s<'a>,
    customers: U32s<'a>,
    codes: U32s<'a>,
    property_ends: U32s<'a>,
    property_names: U32s<'a>,
    string_ends: U32s<'a>,
    property_kinds: &'a [u8],
    number_scales: &'a [u8],
    names: &'a str,
    ids: &'a str,
    strings: &'a str,
    /// Per property: the index of its value in the number or string columns.
    value_slots: &'a [u32],
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
        let events = Self::columns(bytes, &[])?;
        if !events.is_well_formed(value_slots) {
            // Which check failed, for the error (and `value_slots` again, the same way).
            events.check(value_slots)?;
        }
        let value_slots: &'a Vec<u32> = value_slots;
        Ok(Events {
            value_slots,
            ..events
        })
    }

    fn columns(bytes: &'a [u8], value_slots: &'a [u32]) -> Result<Events<'a>> {
        let mut reader = Reader { bytes };
        let mut counts = [0usize; 8];
        for (count, n) in counts.iter_mut().zip(reader.u32s(8)?.iter()) {
            *count = n as usize;
        }
        let fields = reader.u32s(1)?.at(0);
        if fields & !field::ALL != 0 {
            return Err(malformed("unknown fields"));
        }
        let [
            n_events,
            n_properties,
            n_names,
            n_strings,
            n_numbers,
            names_bytes,
            ids_bytes,
            strings_bytes,
        ] = counts;
        // A part left out has an empty column.
        let n_if = |bit: u32| if fields & bit != 0 { n_events } else { 0 };
        let events = Events {
            n_events,
            fields,
            timestamps_ms: reader.take(n_events, 8)?,
            number_los: reader.take(n_numbers, 8)?,
            number_his: reader.u32s(n_numbers)?,
            name_ends: reader.u32s(n_names)?,
            id_ends: reader.u32s(n_if(field::IDS))?,
            customers: reader.u32s(n_if(field::CUSTOMERS))?,
            codes: reader.u32s(n_if(field::CODES))?,
            property_ends: reader.u32s(n_events)?,
            property_names: reader.u32s(n_properties)?,
            string_ends: reader.u32s(n_strings)?,
            property_kinds: reader.take(n_properties, 1)?,
            number_scales: reader.take(n_numbers, 1)?,
            names: reader.text(names_bytes)?,
            ids: reader.text(ids_bytes)?,
            strings: reader.text(strings_bytes)?,
            value_slots,
            recent_names: Cell::new([NO_NAME; NAME_CACHE]),
            next_recent: Cell::new(0),
        };
        if !reader.bytes.is_empty() {
            return Err(malformed("bytes are left over"));
        }
        Ok(events)
    }

    /// `check(value_slots).is_ok()`, in two fused passes (one over events, one over properties)
    /// without a branch per item: the cost of a batch the host wrote correctly. Fills
    /// `value_slots` as `check` does.
    fn is_well_formed(&self, value_slots: &mut Vec<u32>) -> bool {
        let n_names = self.name_ends.len() as u32;
        let (names_ok, ids_ok, strings_ok) = (
            ends_are_well_formed(self.name_ends, self.names),
            ends_are_well_formed(self.id_ends, self.ids),
            ends_are_well_formed(self.string_ends, self.strings),
        );
        let n_properties = self.property_kinds.len();
        // Per event: the end of its properties, its customer and code names (if passed).
        let (mut bad, mut previous_end) = (false, 0u32);
        for end in self.property_ends.iter() {
            bad |= end < previous_end;
            previous_end = end;
        }
        let mut largest_name = [self.customers, self.codes]
            .map(|column| column.iter().fold(0, u32::max))
            .into_iter()
            .fold(0, u32::max);
        bad |= previous_end as usize != n_properties;
        // Per property: its name, its kind, the index of its value in its column.
        let (mut strings, mut numbers) = (0u32, 0u32);
        value_slots.clear();
        value_slots.resize(n_properties, 0);
        for ((name, value_kind), value_slot) in self
            .property_names
            .iter()
            .zip(self.property_kinds)
            .zip(value_slots.iter_mut())
        {
            largest_name = largest_name.max(name);
            let (is_str, is_num) = (
                *value_kind == kind::STR,
                matches!(*value_kind, kind::NUM | kind::NEG_NUM),
            );
            *value_slot = match (is_str, is_num) {
                (true, _) => strings,
                (_, true) => numbers,
                _ => 0,
            };
            strings += is_str as u32;
            numbers += is_num as u32;
            bad |= *value_kind > kind::OTHER;
        }
        let largest_scale = self.number_scales.iter().copied().max().unwrap_or(0);
        names_ok
            && ids_ok
            && strings_ok
            && !bad
            && (largest_name < n_names
                || self.customers.len() + self.codes.len() + n_properties == 0)
            && strings as usize == self.string_ends.len()
            && numbers as usize == self.number_scales.len()
            && largest_scale <= 28
    }

    /// The one pass that makes every accessor infallible.
    fn check(&self, value_slots: &mut Vec<u32>) -> Result<()> {
        check_ends(self.name_ends, self.names)?;
        check_ends(self.id_ends, self.ids)?;
        check_ends(self.string_ends, self.strings)?;
        let n_names = self.name_ends.len() as u32;
        for column in [self.customers, self.codes, self.property_names] {
            // The largest index, without a branch per item.
            if column.iter().max().is_some_and(|i| i >= n_names) {
                return Err(malformed("a name index is out of range"));
            }
        }
        let n_properties = self.property_kinds.len();
        let mut start = 0;
        for end in self.property_ends.iter() {
            let end = end as usize;
            if end < start || end > n_properties {
                return Err(malformed("a property range is out of the batch"));
            }
            start = end;
        }
        if start != n_properties {
            return Err(malformed("properties are left over"));
        }
        if self
            .number_scales
            .iter()
            .max()
            .is_some_and(|scale| *scale > 28)
        {
            return Err(malformed("a number is out of range"));
        }
        let (n_strings, n_numbers) = (self.string_ends.len(), self.number_scales.len());
        let (mut strings, mut numbers) = (0usize, 0usize);
        value_slots.clear();
        value_slots.resize(n_properties, 0);
        for (value_kind, value_slot) in self.property_kinds.iter().zip(value_slots.iter_mut()) {
            *value_slot = match *value_kind {
                kind::STR => {
                    if strings == n_strings {
                        return Err(malformed("a string property has no string"));
                    }
                    strings += 1;
                    strings - 1
                }
                kind::NUM | kind::NEG_NUM => {
                    if numbers == n_numbers {
                        return Err(malformed("a number property has no number"));
                    }
                    numbers += 1;
                    numbers - 1
                }
                kind::FALSE | kind::TRUE | kind::NULL | kind::OTHER => 0,
                _ => return Err(malformed("unknown property kind")),
            } as u32;
        }
        if strings != n_strings || numbers != n_numbers {
            return Err(malformed("values are left over"));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.n_events
    }

    pub fn is_empty(&self) -> bool {
        self.n_events == 0
    }

    /// Event `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<EventRef<'_>> {
        (index < self.n_events).then_some(EventRef {
            events: self,
            index,
        })
    }

    pub fn iter(&self) -> EventIter<'_> {
        EventIter {
            events: self,
            range: 0..self.n_events,
        }
    }

    /// Name `i` of the batch's names (customers, codes, property names).
    #[inline]
    fn name(&self, i: u32) -> &'a str {
        let (start, end) = self.name_ends.range(i as usize);
        self.names.get(start..end).unwrap_or_default()
    }

    /// The index of `name` among the batch's names.
    #[inline]
    fn name_index(&self, name: &str) -> Option<u32> {
        let recent = self.recent_names.get();
        for (i, start, end) in recent {
            if self
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
        let i = (0..self.name_ends.len() as u32).find(|i| self.name(*i) == name)?;
        let (start, end) = self.name_ends.range(i as usize);
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
            kinds: self.property_kinds,
            slots: self.value_slots,
            numbers: (self.number_los, self.number_his, self.number_scales),
        }
    }

    /// Number `slot` of the number columns.
    #[inline]
    fn number(&self, slot: usize, negative: bool) -> Decimal {
        number_at(self.values().numbers, slot, negative)
    }

    /// The text of property `p` of the batch, if it is a string.
    fn str_value(&self, p: usize) -> Option<&'a str> {
        if self.property_kinds.get(p) != Some(&kind::STR) {
            return None;
        }
        let slot = self.value_slots.get(p).copied().unwrap_or_default() as usize;
        let (start, end) = self.string_ends.range(slot);
        self.strings.get(start..end)
    }

    /// The value of property `p` of the batch.
    fn value(&self, p: usize) -> Value<'a> {
        let slot = self.value_slots.get(p).copied().unwrap_or_default() as usize;
        match self.property_kinds.get(p).copied().unwrap_or(kind::OTHER) {
            kind::STR => {
                let (start, end) = self.string_ends.range(slot);
                Value::Str(Cow::Borrowed(
                    self.strings.get(start..end).unwrap_or_default(),
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
        self.timestamps_ms
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
            end: self.n_events,
            first_property: 0,
            property_ends: self.property_ends,
            property_names: self.property_names,
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
        let n = self.n_events;
        let mut dense = self.property_kinds.len() == n && self.number_scales.len() == n;
        let mut expected_end = 0u32;
        for end in self.property_ends.iter() {
            expected_end = expected_end.wrapping_add(1);
            dense &= end == expected_end;
        }
        dense &= self
            .property_names
            .iter()
            .fold(true, |all, p| all & (p == name));
        dense &= self
            .property_kinds
            .iter()
            .fold(true, |all, k| all & matches!(*k, kind::NUM | kind::NEG_NUM));
        dense.then(|| {
            let (los, his) = (
                self.number_los.as_chunks().0,
                self.number_his.0.as_chunks().0,
            );
            los.iter()
                .zip(his)
                .zip(self.number_scales.iter().zip(self.property_kinds))
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
        if self.events.fields & field::IDS == 0 {
            return "";
        }
        let (start, end) = self.events.id_ends.range(self.index);
        self.events.ids.get(start..end).unwrap_or_default()
    }

    /// The event's customer; `""` if the metric does not read customers ([`Reads`]).
    pub fn customer(&self) -> &'e str {
        if self.events.fields & field::CUSTOMERS == 0 {
            return "";
        }
        self.events.name(self.events.customers.at(self.index))
    }

    /// The event's position in its batch, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Unix milliseconds, UTC.
    #[inline]
    pub fn timestamp_ms(&self) -> i64 {
        u64_at(self.events.timestamps_ms, self.index) as i64
    }

    /// The event's code; `""` if the metric does not read codes ([`Reads`]).
    pub fn code(&self) -> &'e str {
        if self.events.fields & field::CODES == 0 {
            return "";
        }
        self.events.name(self.events.codes.at(self.index))
    }

    /// The range of this event's properties in the batch.
    #[inline]
    fn property_range(&self) -> std::ops::Range<usize> {
        let (start, end) = self.events.property_ends.range(self.index);
        start..end
    }

    /// The properties, sorted by name.
    pub fn properties(&self) -> impl Iterator<Item = Property<'e>> + 'e {
        let events = self.events;
        self.property_range().map(move |p| Property {
            name: Cow::Borrowed(events.name(events.property_names.at(p))),
            value: events.value(p),
        })
    }

    /// The index in the batch of property `name` of this event.
    #[inline]
    fn find(&self, name: &str) -> Option<usize> {
        let name_index = self.events.name_index(name)?;
        self.property_range()
            .find(|p| self.events.property_names.at(*p) == name_index)
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
        let bytes = Columns::write_reads(events, reads).bytes();
        let mut value_slots = Vec::new();
        if let Err(error) = Events::parse(&bytes, &mut value_slots) {
            panic!("the SDK wrote a malformed batch: {error:?}");
        }
        Batch { bytes, value_slots }
    }

    /// The batch's bytes, as they cross into a plugin.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn events(&self) -> Events<'_> {
        match Events::columns(&self.bytes, &self.value_slots) {
            Ok(events) => events,
            Err(error) => panic!("the SDK wrote a malformed batch: {error:?}"),
        }
    }
}

/// The columns of an `event-batch` before they are laid out in one buffer.
#[doc(hidden)]
#[derive(Clone, Debug, Default)]
pub struct Columns {
    /// Which parts of the events the columns hold ([`field`] bits).
    pub fields: u32,
    pub names: String,
    pub name_ends: Vec<u32>,
    pub ids: String,
    pub id_ends: Vec<u32>,
    pub customers: Vec<u32>,
    pub timestamps_ms: Vec<i64>,
    pub codes: Vec<u32>,
    pub property_ends: Vec<u32>,
    pub property_names: Vec<u32>,
    pub property_kinds: Vec<u8>,
    pub strings: String,
    pub string_ends: Vec<u32>,
    pub number_los: Vec<u64>,
    pub number_his: Vec<u32>,
    pub number_scales: Vec<u8>,
}

impl Columns {
    /// Writes events the way a host does: names once, text and numbers in columns.
    pub fn write(events: &[Event<'_>]) -> Columns {
        Columns::write_reads(events, &Reads::everything())
    }

    /// `write`, with only what `reads` asks for.
    pub fn write_reads(events: &[Event<'_>], reads: &Reads) -> Columns {
        let mut c = Columns {
            fields: reads.fields(),
            ..Columns::default()
        };
        let mut names: std::collections::HashMap<String, u32> = Default::default();
        let mut name = |c: &mut Columns, s: &str| {
            if let Some(i) = names.get(s) {
                return *i;
            }
            let i = names.len() as u32;
            names.insert(s.to_owned(), i);
            c.names.push_str(s);
            c.name_ends.push(c.names.len() as u32);
            i
        };
        for e in events {
            for p in e
                .properties
                .iter()
                .filter(|p| reads.reads_property(&p.name))
            {
                let value_kind = match &p.value {
                    Value::Str(s) => {
                        c.strings.push_str(s);
                        c.string_ends.push(c.strings.len() as u32);
                        kind::STR
                    }
                    Value::Num(n) => {
                        let m = n.mantissa().unsigned_abs();
                        c.number_los.push(m as u64);
                        c.number_his.push((m >> 64) as u32);
                        c.number_scales.push(n.scale() as u8);
                        if n.is_sign_negative() {
                            kind::NEG_NUM
                        } else {
                            kind::NUM
                        }
                    }
                    Value::Boolean(false) => kind::FALSE,
                    Value::Boolean(true) => kind::TRUE,
                    Value::Null => kind::NULL,
                    Value::Other => kind::OTHER,
                };
                let i = name(&mut c, &p.name);
                c.property_names.push(i);
                c.property_kinds.push(value_kind);
            }
            if reads.ids {
                c.ids.push_str(&e.id);
                c.id_ends.push(c.ids.len() as u32);
            }
            if reads.customers {
                let customer = name(&mut c, &e.customer);
                c.customers.push(customer);
            }
            if reads.codes {
                let code = name(&mut c, &e.code);
                c.codes.push(code);
            }
            c.timestamps_ms.push(e.timestamp_ms);
            c.property_ends.push(c.property_names.len() as u32);
        }
        c
    }

    /// The buffer of the contract's `event-batch`.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let u32s = |out: &mut Vec<u8>, column: &[u32]| {
            column
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes()))
        };
        u32s(
            &mut out,
            &[
                self.timestamps_ms.len() as u32,
                self.property_names.len() as u32,
                self.name_ends.len() as u32,
                self.string_ends.len() as u32,
                self.number_los.len() as u32,
                self.names.len() as u32,
                self.ids.len() as u32,
                self.strings.len() as u32,
                self.fields,
            ],
        );
        self.timestamps_ms
            .iter()
            .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
        self.number_los
            .iter()
            .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
        for column in [
            &self.number_his,
            &self.name_ends,
            &self.id_ends,
            &self.customers,
            &self.codes,
            &self.property_ends,
            &self.property_names,
            &self.string_ends,
        ] {
            u32s(&mut out, column);
        }
        out.extend_from_slice(&self.property_kinds);
        out.extend_from_slice(&self.number_scales);
        out.extend_from_slice(self.names.as_bytes());
        out.extend_from_slice(self.ids.as_bytes());
        out.extend_from_slice(self.strings.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

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

    proptest! {
        /// The fused check accepts exactly the batches the detailed check accepts, and fills
        /// the same value slots: a good batch (with every part, or some) with a few bytes
        /// changed at random.
        #[test]
        fn fused_and_detailed_checks_agree(
            changes in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..4),
            everything in any::<bool>(),
        ) {
            let reads = match everything {
                true => Reads::everything(),
                false => Reads::timestamps().customers().property("a"),
            };
            let good = Columns::write_reads(&[
                event("1", 0, "x", &[("a", num("1")), ("b", string("s"))]),
                event("é2", 5, "y", &[("a", num("-2.5")), ("c", Value::Null)]),
                event("3", 9, "x", &[]),
            ], &reads);
            let mut bytes = good.bytes();
            for (at, byte) in &changes {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
            if let Ok(events) = Events::columns(&bytes, &[]) {
                let (mut fused, mut detailed) = (Vec::new(), Vec::new());
                let well_formed = events.is_well_formed(&mut fused);
                let checked = events.check(&mut detailed);
                prop_assert_eq!(well_formed, checked.is_ok(), "{:?}", checked);
                if well_formed {
                    prop_assert_eq!(fused, detailed);
                }
            }
        }
    }
}
