//! Writing: events (anything that is a [`WireEvent`]) → the columns of one batch → its bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::read::same_text;
use crate::{BatchError, Reads, kind};

/// A property value as it crosses: text, an exact number, a boolean, null, or anything else
/// (an array, an object, a number out of range), which crosses as its kind alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireValue<'a> {
    Str(&'a str),
    Num(Decimal),
    Bool(bool),
    Null,
    Other,
}

/// An event a [`BatchWriter`] can write: the host implements it for the engine's events, the
/// SDK for its test events.
pub trait WireEvent {
    fn id(&self) -> &str;
    fn customer(&self) -> &str;
    /// Unix milliseconds, UTC.
    fn timestamp_ms(&self) -> i64;
    fn code(&self) -> &str;
    /// Every property, names unique, in the order they are to cross; each value is read only
    /// if the metric reads its property.
    fn properties<'s>(&'s self) -> impl Iterator<Item = (&'s str, impl FnOnce() -> WireValue<'s>)>;
}

/// The columns of a batch before they are laid out in one buffer (see the crate doc for their
/// order). [`BatchWriter::columns`] gives the last batch's, so a test can change one and lay it
/// out ([`Columns::bytes`]) to build a malformed batch.
#[derive(Clone, Debug, Default)]
pub struct Columns {
    /// Which parts of the events the columns hold ([`crate::field`] bits).
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
    #[inline]
    fn clear(&mut self) {
        for text in [&mut self.names, &mut self.ids, &mut self.strings] {
            text.clear();
        }
        for column in [
            &mut self.name_ends,
            &mut self.id_ends,
            &mut self.customers,
            &mut self.codes,
            &mut self.property_ends,
            &mut self.property_names,
            &mut self.string_ends,
            &mut self.number_his,
        ] {
            column.clear();
        }
        self.timestamps_ms.clear();
        self.property_kinds.clear();
        self.number_los.clear();
        self.number_scales.clear();
    }

    /// The batch's buffer.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.lay_out(&mut out);
        out
    }

    /// Writes the batch's buffer into `out` (cleared first). Counts are taken as `u32`: the
    /// writer checks they fit before.
    #[inline]
    pub fn lay_out(&self, out: &mut Vec<u8>) {
        let header = [
            self.timestamps_ms.len() as u32,
            self.property_names.len() as u32,
            self.name_ends.len() as u32,
            self.string_ends.len() as u32,
            self.number_los.len() as u32,
            self.names.len() as u32,
            self.ids.len() as u32,
            self.strings.len() as u32,
            self.fields,
        ];
        let words: [&[u32]; 8] = [
            &self.number_his,
            &self.name_ends,
            &self.id_ends,
            &self.customers,
            &self.codes,
            &self.property_ends,
            &self.property_names,
            &self.string_ends,
        ];
        let bytes: [&[u8]; 5] = [
            &self.property_kinds,
            &self.number_scales,
            self.names.as_bytes(),
            self.ids.as_bytes(),
            self.strings.as_bytes(),
        ];
        let len = 4 * header.len()
            + 8 * (self.timestamps_ms.len() + self.number_los.len())
            + 4 * words.iter().map(|w| w.len()).sum::<usize>()
            + bytes.iter().map(|b| b.len()).sum::<usize>();
        // Sized once, then each column copied into its place (a loop the compiler vectorizes,
        // where pushing value by value checks the capacity each time).
        out.clear();
        out.resize(len, 0);
        let mut rest = out.as_mut_slice();
        fn put<const N: usize, T: Copy>(
            rest: &mut &mut [u8],
            column: &[T],
            to_bytes: impl Fn(T) -> [u8; N],
        ) {
            let (head, tail) = std::mem::take(rest).split_at_mut(N * column.len());
            for (place, &value) in head.chunks_exact_mut(N).zip(column) {
                place.copy_from_slice(&to_bytes(value));
            }
            *rest = tail;
        }
        put(&mut rest, &header, u32::to_le_bytes);
        put(&mut rest, &self.timestamps_ms, i64::to_le_bytes);
        put(&mut rest, &self.number_los, u64::to_le_bytes);
        for column in words {
            put(&mut rest, column, u32::to_le_bytes);
        }
        for column in bytes {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(column.len());
            head.copy_from_slice(column);
            rest = tail;
        }
        debug_assert!(rest.is_empty());
    }
}

/// Writes events as one `event-batch`, with only what the metric reads. Keeps its buffers
/// between batches, so a live accumulator allocates nothing per `update` once warm.
#[derive(Debug, Default)]
pub struct BatchWriter {
    /// Shared with the plugin's other metrics of the same config.
    reads: Arc<Reads>,
    /// The names of the properties read, past a few: looked up in a set, not scanned.
    many_properties: Option<HashSet<String>>,
    columns: Columns,
    names: Names,
    bytes: Vec<u8>,
}

/// Names of one batch, each written once: a short list scanned in order, then a map. Entries
/// are (start, end) of the name in the batch's `names` text, so the list is reused between
/// batches without allocating.
#[derive(Debug, Default)]
struct Names {
    seen: Vec<(u32, u32)>,
    map: HashMap<Box<str>, u32>,
}

const NAMES_SCANNED: usize = 16;

/// How many property names a metric reads before the writer looks them up in a set.
const PROPERTIES_SCANNED: usize = 8;

impl Names {
    fn clear(&mut self) {
        self.seen.clear();
        self.map.clear();
    }

    #[inline]
    fn index(&mut self, name: &str, names: &mut String, name_ends: &mut Vec<u32>) -> u32 {
        let found = if self.seen.len() < NAMES_SCANNED {
            self.seen.iter().position(|(start, end)| {
                same_text(
                    &names.as_bytes()[*start as usize..*end as usize],
                    name.as_bytes(),
                )
            })
        } else {
            self.map.get(name).map(|i| *i as usize)
        };
        if let Some(index) = found {
            return index as u32;
        }
        let index = name_ends.len() as u32;
        let start = names.len() as u32;
        names.push_str(name);
        name_ends.push(names.len() as u32);
        if self.seen.len() < NAMES_SCANNED {
            self.seen.push((start, names.len() as u32));
            if self.seen.len() == NAMES_SCANNED {
                for (i, (start, end)) in self.seen.iter().enumerate() {
                    self.map
                        .insert(names[*start as usize..*end as usize].into(), i as u32);
                }
            }
        } else {
            self.map.insert(name.into(), index);
        }
        index
    }

    /// `index`, trying first `hint` (the name the previous event had in the same place:
    /// consecutive events mostly share their customer, code and property names).
    #[inline(always)]
    fn index_hinted(
        &mut self,
        name: &str,
        hint: Option<u32>,
        names: &mut String,
        name_ends: &mut Vec<u32>,
    ) -> u32 {
        if let Some(i) = hint {
            let i_usize = i as usize;
            let start = match i_usize {
                0 => 0,
                _ => name_ends[i_usize - 1] as usize,
            };
            let end = name_ends[i_usize] as usize;
            if names
                .as_bytes()
                .get(start..end)
                .is_some_and(|hinted| same_text(hinted, name.as_bytes()))
            {
                return i;
            }
        }
        self.index(name, names, name_ends)
    }
}

/// Whether property `name` is read; `many` is the set of the names when there are many of
/// them (the list is the plugin's: its length must not set the host's cost per property).
#[inline]
fn reads_property(reads: &Reads, name: &str, many: Option<&HashSet<String>>) -> bool {
    match (&reads.properties, many) {
        (None, _) => true,
        (Some(_), Some(many)) => many.contains(name),
        (Some(names), None) => names
            .iter()
            .any(|read| same_text(read.as_bytes(), name.as_bytes())),
    }
}

impl BatchWriter {
    /// A writer of batches holding what `reads` asks for.
    pub fn new(reads: impl Into<Arc<Reads>>) -> BatchWriter {
        let reads = reads.into();
        let many_properties = reads
            .properties
            .as_ref()
            .filter(|names| names.len() > PROPERTIES_SCANNED)
            .map(|names| names.iter().cloned().collect());
        BatchWriter {
            reads,
            many_properties,
            ..BatchWriter::default()
        }
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// The columns of the last batch written.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// The `event-batch` of `events`, or [`BatchError::TooLarge`] if it does not fit the
    /// contract's 32-bit counts and offsets.
    pub fn write<E: WireEvent>(
        &mut self,
        events: impl ExactSizeIterator<Item = E>,
    ) -> Result<&[u8], BatchError> {
        let (reads, many) = (&*self.reads, self.many_properties.as_ref());
        let c = &mut self.columns;
        c.clear();
        c.fields = reads.fields();
        let names = &mut self.names;
        names.clear();
        let (mut customer, mut code) = (None, None);
        let mut previous_properties = 0..0;
        // The columns of one value per event are sized once and written in place; those of
        // parts the metric does not read stay empty.
        let n = events.len();
        let n_if = |read: bool| if read { n } else { 0 };
        c.id_ends.resize(n_if(reads.ids), 0);
        c.customers.resize(n_if(reads.customers), 0);
        c.codes.resize(n_if(reads.codes), 0);
        c.timestamps_ms.resize(n, 0);
        c.property_ends.resize(n, 0);
        let per_event = c.timestamps_ms.iter_mut().zip(c.property_ends.iter_mut());
        let mut n_written = 0;
        for (i, (event, (timestamp_ms, property_end))) in events.zip(per_event).enumerate() {
            n_written += 1;
            let first_property = c.property_names.len();
            let properties = event.properties();
            let read = properties.filter(|(name, _)| reads_property(reads, name, many));
            for (k, (name, value)) in read.enumerate() {
                let value_kind = match value() {
                    WireValue::Str(s) => {
                        c.strings.push_str(s);
                        c.string_ends.push(c.strings.len() as u32);
                        kind::STR
                    }
                    WireValue::Num(n) => {
                        let mantissa = n.mantissa();
                        let magnitude = mantissa.unsigned_abs();
                        c.number_los.push(magnitude as u64);
                        c.number_his.push((magnitude >> 64) as u32);
                        c.number_scales.push(n.scale() as u8);
                        if mantissa < 0 {
                            kind::NEG_NUM
                        } else {
                            kind::NUM
                        }
                    }
                    WireValue::Other => kind::OTHER,
                    WireValue::Bool(false) => kind::FALSE,
                    WireValue::Bool(true) => kind::TRUE,
                    WireValue::Null => kind::NULL,
                };
                let hint = previous_properties
                    .clone()
                    .nth(k)
                    .map(|p| c.property_names[p]);
                let name = names.index_hinted(name, hint, &mut c.names, &mut c.name_ends);
                c.property_names.push(name);
                c.property_kinds.push(value_kind);
            }
            previous_properties = first_property..c.property_names.len();
            if let Some(id_end) = c.id_ends.get_mut(i) {
                c.ids.push_str(event.id());
                *id_end = c.ids.len() as u32;
            }
            if let Some(customer_at) = c.customers.get_mut(i) {
                let index =
                    names.index_hinted(event.customer(), customer, &mut c.names, &mut c.name_ends);
                customer = Some(index);
                *customer_at = index;
            }
            if let Some(code_at) = c.codes.get_mut(i) {
                let index = names.index_hinted(event.code(), code, &mut c.names, &mut c.name_ends);
                code = Some(index);
                *code_at = index;
            }
            *timestamp_ms = event.timestamp_ms();
            *property_end = c.property_names.len() as u32;
        }
        // An iterator shorter than it said: the columns of one value per event are cut to it.
        if n_written < n {
            for column in [&mut c.id_ends, &mut c.customers, &mut c.codes] {
                column.truncate(n_written);
            }
            c.timestamps_ms.truncate(n_written);
            c.property_ends.truncate(n_written);
        }
        // Offsets were computed in 32 bits: valid as long as the totals fit.
        let largest = c
            .ids
            .len()
            .max(c.strings.len())
            .max(c.names.len())
            .max(c.property_names.len())
            .max(n);
        if u32::try_from(largest).is_err() {
            return Err(BatchError::TooLarge { n_events: n });
        }
        c.lay_out(&mut self.bytes);
        Ok(&self.bytes)
    }
}
