//! Conversions between the engine's types and the contract's. Results, prices and amounts cross
//! as decimal strings; event numbers as exact fixed-point `number`s in a flat `event-batch`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ratecard_engine::Decimal;
use ratecard_engine::decimal::Dec;
use ratecard_engine::invoice::BreakdownRow;
use ratecard_engine::plugin::{PluginError, PriceRequest, PricedLine};
use ratecard_engine::usage::{Event, PropValue};

use crate::plugins::bindings::ratecard::plugin::types;

/// What a plugin says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub description: String,
    /// `"metric"` and/or `"price"`.
    pub kinds: Vec<String>,
    /// JSON Schema of the config.
    pub config_schema: serde_json::Value,
}

pub(crate) fn metadata(m: types::Metadata) -> Result<Metadata, String> {
    if m.name.is_empty() || m.name.contains('@') {
        return Err(format!("invalid plugin name `{}`", m.name));
    }
    if m.version.is_empty() || m.version.contains('@') {
        return Err(format!("invalid plugin version `{}`", m.version));
    }
    let config_schema = serde_json::from_str(&m.config_schema)
        .map_err(|e| format!("the config schema is not JSON: {e}"))?;
    Ok(Metadata {
        name: m.name,
        version: m.version,
        description: m.description,
        kinds: m
            .kinds
            .iter()
            .map(|k| match k {
                types::PluginKind::Metric => "metric".to_owned(),
                types::PluginKind::Price => "price".to_owned(),
            })
            .collect(),
        config_schema,
    })
}

/// Writes a decimal for a plugin: plain notation.
pub fn decimal_text(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Reads a decimal a plugin returned from `what` (`finish`, `price: line 2 amount`), with the
/// contract's strict grammar: plain notation, exact, at most 28 decimal places (see
/// [`ratecard_engine::decimal::parse_plain_decimal`]).
pub fn decimal(what: &str, text: &str) -> Result<Decimal, String> {
    ratecard_engine::decimal::parse_plain_decimal(text)
        .map_err(|why| format!("{what}: `{}` is refused: {why}", guest_text(text, 64)))
}

/// Bytes of guest-controlled text an error message repeats.
pub const GUEST_TEXT_BYTES: usize = 256;

/// `text`, cut to at most `max` bytes (on a character boundary) with how much was cut: a
/// plugin's strings reach error messages and logs, and a plugin controls their length.
pub fn guest_text(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}

/// The kinds of property values in an `event-batch` (see the contract's WIT).
mod kind {
    pub const STR: u8 = 0;
    pub const NUM: u8 = 1;
    pub const NEG_NUM: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const TRUE: u8 = 4;
    pub const NULL: u8 = 5;
    pub const OTHER: u8 = 6;
}

/// The bits of an `event-batch`'s `fields` word (see the contract's WIT).
mod field {
    pub const IDS: u32 = 1;
    pub const CUSTOMERS: u32 = 2;
    pub const CODES: u32 = 4;
}

/// What of each event a metric reads (its `reads`, the contract's `event-fields`): what the
/// host writes into its batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads {
    pub ids: bool,
    pub customers: bool,
    pub codes: bool,
    /// The properties read; `None`: all of them.
    pub properties: Option<Vec<String>>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads {
            ids: true,
            customers: true,
            codes: true,
            properties: None,
        }
    }
}

/// `timestamps, codes, properties mbps, region`: what an operator is shown a plugin reads.
impl std::fmt::Display for Reads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("timestamps")?;
        for (read, part) in [
            (self.ids, "ids"),
            (self.customers, "customers"),
            (self.codes, "codes"),
        ] {
            if read {
                write!(f, ", {part}")?;
            }
        }
        match &self.properties {
            None => f.write_str(", every property"),
            Some(names) if names.is_empty() => Ok(()),
            Some(names) => write!(f, ", properties {}", names.join(", ")),
        }
    }
}

impl From<types::EventFields> for Reads {
    fn from(fields: types::EventFields) -> Reads {
        Reads {
            ids: fields.ids,
            customers: fields.customers,
            codes: fields.codes,
            properties: fields.properties,
        }
    }
}

impl Reads {
    fn fields(&self) -> u32 {
        (self.ids as u32 * field::IDS)
            | (self.customers as u32 * field::CUSTOMERS)
            | (self.codes as u32 * field::CODES)
    }

    /// Whether property `name` is read; `many` is the set of the names when there are many of
    /// them (the list is the plugin's: its length must not set the host's cost per property).
    #[inline]
    fn reads_property(&self, name: &str, many: Option<&HashSet<String>>) -> bool {
        match (&self.properties, many) {
            (None, _) => true,
            (Some(_), Some(many)) => many.contains(name),
            (Some(names), None) => names
                .iter()
                .any(|read| same_text(read.as_bytes(), name.as_bytes())),
        }
    }

    /// The bytes of what a metric says it reads, for the output limit.
    pub(crate) fn size(&self) -> usize {
        self.properties
            .iter()
            .flatten()
            .map(|name| name.len() + 4)
            .sum()
    }
}

/// Writes engine events as one `event-batch` of the contract (columns in one byte buffer, see
/// the WIT), with only what the metric reads. Keeps its buffers between batches, so a live
/// accumulator allocates nothing per `update` once warm.
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

#[derive(Debug, Default)]
struct Columns {
    names: String,
    name_ends: Vec<u32>,
    ids: String,
    id_ends: Vec<u32>,
    customers: Vec<u32>,
    timestamps_ms: Vec<i64>,
    codes: Vec<u32>,
    property_ends: Vec<u32>,
    property_names: Vec<u32>,
    property_kinds: Vec<u8>,
    strings: String,
    string_ends: Vec<u32>,
    number_los: Vec<u64>,
    number_his: Vec<u32>,
    number_scales: Vec<u8>,
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
}

impl Names {
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

/// `a == b` for the short texts of events (names, codes, customers) without a call to `memcmp`:
/// a text of 4 to 16 bytes is two overlapping loads from each side.
#[inline]
fn same_text(a: &[u8], b: &[u8]) -> bool {
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

    /// The `event-batch` of `events`, or an error if it does not fit the contract's 32-bit
    /// counts and offsets.
    pub fn write(&mut self, events: &[Event<'_>]) -> Result<&types::EventBatch, String> {
        let (reads, many) = (&self.reads, self.many_properties.as_ref());
        let c = &mut self.columns;
        for text in [&mut c.names, &mut c.ids, &mut c.strings] {
            text.clear();
        }
        for column in [
            &mut c.name_ends,
            &mut c.id_ends,
            &mut c.customers,
            &mut c.codes,
            &mut c.property_ends,
            &mut c.property_names,
            &mut c.string_ends,
            &mut c.number_his,
        ] {
            column.clear();
        }
        c.timestamps_ms.clear();
        c.property_kinds.clear();
        c.number_los.clear();
        c.number_scales.clear();
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
        for (i, (event, (timestamp_ms, property_end))) in events.iter().zip(per_event).enumerate() {
            let first_property = c.property_names.len();
            let read = event
                .properties
                .iter()
                .filter(|(name, _)| reads.reads_property(name, many));
            for (k, (name, value)) in read.enumerate() {
                let value_kind = match value {
                    PropValue::Str(s) => {
                        c.strings.push_str(s);
                        c.string_ends.push(c.strings.len() as u32);
                        kind::STR
                    }
                    PropValue::Num(Ok(n)) => {
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
                    PropValue::Num(Err(_)) | PropValue::Other => kind::OTHER,
                    PropValue::Bool(false) => kind::FALSE,
                    PropValue::Bool(true) => kind::TRUE,
                    PropValue::Null => kind::NULL,
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
                c.ids.push_str(&event.id);
                *id_end = c.ids.len() as u32;
            }
            if let Some(customer_at) = c.customers.get_mut(i) {
                let index =
                    names.index_hinted(&event.customer, customer, &mut c.names, &mut c.name_ends);
                customer = Some(index);
                *customer_at = index;
            }
            if let Some(code_at) = c.codes.get_mut(i) {
                let index = names.index_hinted(&event.code, code, &mut c.names, &mut c.name_ends);
                code = Some(index);
                *code_at = index;
            }
            *timestamp_ms = event.timestamp.0;
            *property_end = c.property_names.len() as u32;
        }
        // Offsets were computed in 32 bits: valid as long as the totals fit.
        let largest = c
            .ids
            .len()
            .max(c.strings.len())
            .max(c.names.len())
            .max(c.property_names.len());
        if u32::try_from(largest).is_err() {
            return Err(format!(
                "a batch of {} events is too large for one update: split it",
                events.len()
            ));
        }
        let header = [
            c.timestamps_ms.len() as u32,
            c.property_names.len() as u32,
            c.name_ends.len() as u32,
            c.string_ends.len() as u32,
            c.number_los.len() as u32,
            c.names.len() as u32,
            c.ids.len() as u32,
            c.strings.len() as u32,
            reads.fields(),
        ];
        let words: [&[u32]; 9] = [
            &header,
            &c.number_his,
            &c.name_ends,
            &c.id_ends,
            &c.customers,
            &c.codes,
            &c.property_ends,
            &c.property_names,
            &c.string_ends,
        ];
        let (header, words) = words.split_at(1);
        let bytes: [&[u8]; 5] = [
            &c.property_kinds,
            &c.number_scales,
            c.names.as_bytes(),
            c.ids.as_bytes(),
            c.strings.as_bytes(),
        ];
        let len = 4 * header[0].len()
            + 8 * (c.timestamps_ms.len() + c.number_los.len())
            + 4 * words.iter().map(|w| w.len()).sum::<usize>()
            + bytes.iter().map(|b| b.len()).sum::<usize>();
        // Sized once, then each column copied into its place (a loop the compiler vectorizes,
        // where pushing value by value checks the capacity each time).
        let out = &mut self.bytes;
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
        put(&mut rest, header[0], u32::to_le_bytes);
        put(&mut rest, &c.timestamps_ms, i64::to_le_bytes);
        put(&mut rest, &c.number_los, u64::to_le_bytes);
        for column in words {
            put(&mut rest, column, u32::to_le_bytes);
        }
        for column in bytes {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(column.len());
            head.copy_from_slice(column);
            rest = tail;
        }
        debug_assert!(rest.is_empty());
        Ok(&self.bytes)
    }
}

pub fn price_request(request: &PriceRequest) -> types::PriceRequest {
    types::PriceRequest {
        plan_id: request.plan_id.clone(),
        charge_id: request.charge_id.clone(),
        currency: request.currency.clone(),
        config: request.config.to_string(),
        customer_id: request.customer_id.clone(),
        customer_attributes: serde_json::Value::Object(request.customer_attributes.clone())
            .to_string(),
        period_start: request.period_start.clone(),
        period_end: request.period_end.clone(),
        quantities: request
            .quantities
            .iter()
            .map(|q| types::GroupQuantity {
                group: q
                    .group
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                quantity: decimal_text(q.quantity),
            })
            .collect(),
    }
}

pub(crate) fn priced_line_size(line: &types::PricedLine) -> usize {
    line.description.len()
        + line
            .group
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + line.quantity.len()
        + line.amount.len()
        + line
            .breakdown
            .iter()
            .map(|row| {
                row.description.len()
                    + row.quantity.as_ref().map_or(0, String::len)
                    + row.unit_price.as_ref().map_or(0, String::len)
                    + row.amount.len()
            })
            .sum::<usize>()
}

/// Reads and checks what a price plugin returned for `request` (the contract's invariants of a
/// price result, `crates/plugin-sdk/wit/plugin.wit`, `price`):
///
/// - every amount, quantity and unit price is a plain decimal (see [`decimal`]) and none is
///   negative;
/// - a line is for a group of the request and carries exactly that group's quantity, or, when
///   the request has no ungrouped quantity, for the empty group: one line for the charge as a
///   whole (a standing charge), of any quantity;
/// - at most one line per group;
/// - a line with a breakdown is the exact sum of its rows.
pub(crate) fn priced_lines(
    request: &PriceRequest,
    lines: Vec<types::PricedLine>,
) -> Result<Vec<PricedLine>, String> {
    let mut seen: HashSet<BTreeMap<String, String>> = HashSet::with_capacity(lines.len());
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.into_iter().enumerate() {
        let at = |field: &str| format!("line {i} {field}");
        let non_negative = |field: &str, text: &str| {
            let value = decimal(&at(field), text)?;
            if value.is_sign_negative() {
                return Err(format!("{}: `{value}` is negative", at(field)));
            }
            Ok(value)
        };
        let group: BTreeMap<String, String> = line.group.into_iter().collect();
        let quantity = non_negative("quantity", &line.quantity)?;
        let amount = non_negative("amount", &line.amount)?;
        let asked = request.quantities.iter().find(|q| q.group == group);
        match asked {
            Some(asked) if asked.quantity != quantity => {
                return Err(format!(
                    "{}: {quantity}, but the group was asked to be priced at {}",
                    at("quantity"),
                    asked.quantity
                ));
            }
            Some(_) => {}
            None if group.is_empty() => {}
            None => {
                return Err(format!(
                    "line {i} is for group {}, which the request does not have",
                    group_text(&group)
                ));
            }
        }
        if !seen.insert(group.clone()) {
            return Err(format!(
                "line {i} repeats group {}: at most one line per group",
                group_text(&group)
            ));
        }
        let mut breakdown = Vec::with_capacity(line.breakdown.len());
        let mut sum = Decimal::ZERO;
        for (j, row) in line.breakdown.into_iter().enumerate() {
            let row_field = |field: &str| format!("breakdown {j} {field}");
            let quantity = row
                .quantity
                .as_deref()
                .map(|text| non_negative(&row_field("quantity"), text))
                .transpose()?;
            let unit_price = row
                .unit_price
                .as_deref()
                .map(|text| non_negative(&row_field("unit price"), text))
                .transpose()?;
            let row_amount = non_negative(&row_field("amount"), &row.amount)?;
            sum = sum
                .checked_add(row_amount)
                .ok_or_else(|| format!("line {i}: its breakdown overflows a decimal"))?;
            breakdown.push(BreakdownRow {
                description: guest_text(&row.description, GUEST_TEXT_BYTES).into_owned(),
                quantity: quantity.map(Dec),
                unit_price: unit_price.map(Dec),
                amount: Dec(row_amount),
            });
        }
        if !breakdown.is_empty() && sum != amount {
            return Err(format!(
                "line {i}: its breakdown adds up to {sum}, not its amount {amount}"
            ));
        }
        out.push(PricedLine {
            description: guest_text(&line.description, GUEST_TEXT_BYTES).into_owned(),
            group,
            quantity,
            amount,
            breakdown,
        });
    }
    Ok(out)
}

/// A group as a message shows it: `{tou: peak}`, `{}`.
fn group_text(group: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = group
        .iter()
        .map(|(k, v)| format!("{}: {}", guest_text(k, 64), guest_text(v, 64)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// `error`, with an event it names by its place in `events` named by its id instead.
pub(crate) fn name_event(error: types::PluginError, events: &[Event<'_>]) -> types::PluginError {
    match error {
        types::PluginError::InvalidEvent(types::EventError { index, message }) => {
            match events.get(index as usize) {
                Some(event) => {
                    types::PluginError::InvalidInput(format!("event `{}`: {message}", event.id))
                }
                None => types::PluginError::InvalidEvent(types::EventError { index, message }),
            }
        }
        other => other,
    }
}

pub(crate) fn plugin_error(plugin: &str, error: types::PluginError) -> PluginError {
    let plugin = plugin.to_owned();
    let text = |message: &str| guest_text(message, GUEST_TEXT_BYTES).into_owned();
    match error {
        types::PluginError::InvalidEvent(types::EventError { index, message }) => {
            PluginError::Failed {
                plugin,
                message: format!(
                    "invalid input: event #{index} of the batch: {}",
                    text(&message)
                ),
            }
        }
        types::PluginError::InvalidConfig(message) => PluginError::InvalidConfig {
            plugin,
            message: text(&message),
        },
        types::PluginError::InvalidInput(message) => PluginError::Failed {
            plugin,
            message: format!("invalid input: {}", text(&message)),
        },
        types::PluginError::InvalidState(message) => PluginError::Failed {
            plugin,
            message: format!("invalid state: {}", text(&message)),
        },
        types::PluginError::Failed(message) => PluginError::Failed {
            plugin,
            message: text(&message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(bytes: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap())
    }

    #[test]
    fn same_text_is_byte_equality_at_every_length() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_text(&a, &a.clone()), "length {n}");
            assert!(!same_text(&a, &[a.as_slice(), b"x"].concat()), "length {n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!same_text(&a, &b), "length {n}, byte {i} differs");
            }
        }
    }

    #[test]
    fn names_are_written_once_per_batch_past_the_scanned_list() {
        // 40 property names (past the 16 scanned in order), the same on both events.
        let properties: Vec<String> = (0..40).map(|i| format!("\"p{i:02}\": {i}")).collect();
        let line = format!(
            r#"{{"id": "e", "customer": "c", "timestamp": 0, "code": "x", "properties": {{{}}}}}"#,
            properties.join(", ")
        );
        let event: Event<'_> = serde_json::from_str(&line).unwrap();
        let mut writer = BatchWriter::default();
        for _ in 0..2 {
            let bytes = writer
                .write(&[event.clone(), event.clone()])
                .unwrap()
                .clone();
            // Header: events, properties, names, strings, numbers, names-bytes, ...
            assert_eq!(
                (0..6).map(|i| u32_at(&bytes, i)).collect::<Vec<_>>(),
                [2, 80, 42, 0, 80, 3 * 40 + 2]
            );
        }
    }

    #[test]
    fn numbers_cross_as_mantissa_and_scale() {
        let mut event: Event<'_> =
            serde_json::from_str(r#"{"id": "e", "timestamp": 0, "code": "x"}"#).unwrap();
        let n: Decimal = "-79228162514264337593543950.335".parse().unwrap();
        event.properties = [("n".into(), PropValue::Num(Ok(n)))].into();
        let mut writer = BatchWriter::default();
        let bytes = writer.write(&[event]).unwrap();
        // After the header (36 bytes) and one timestamp (8): lo, then hi, of the one number.
        let lo = u64::from_le_bytes(bytes[44..52].try_into().unwrap());
        let hi = u32::from_le_bytes(bytes[52..56].try_into().unwrap());
        assert_eq!(
            (u128::from(hi) << 64) | u128::from(lo),
            n.mantissa().unsigned_abs()
        );
        // The kind and the scale come just before the text columns.
        let text_bytes: usize = (5..8).map(|i| u32_at(bytes, i) as usize).sum();
        let kind_and_scale = &bytes[bytes.len() - text_bytes - 2..bytes.len() - text_bytes];
        assert_eq!(kind_and_scale, [kind::NEG_NUM, 3]);
    }

    #[test]
    fn a_batch_holds_only_what_the_metric_reads() {
        let line = r#"{"id": "evt_1", "customer": "cus_1", "timestamp": 0, "code": "x",
            "properties": {"a": "text", "mbps": 1.5, "z": 2}}"#;
        let event: Event<'_> = serde_json::from_str(line).unwrap();
        let events = [event.clone(), event];
        let header = |writer: &mut BatchWriter| {
            let bytes = writer.write(&events).unwrap().clone();
            (
                (0..9).map(|i| u32_at(&bytes, i)).collect::<Vec<_>>(),
                bytes.len(),
            )
        };
        // events, properties, names, strings, numbers, names-bytes, ids-bytes, strings-bytes,
        // fields.
        let (everything, all_bytes) = header(&mut BatchWriter::default());
        assert_eq!(everything, [2, 6, 5, 2, 4, 12, 10, 8, 7]);
        let mut writer = BatchWriter::new(Reads {
            ids: false,
            customers: false,
            codes: false,
            properties: Some(vec!["mbps".to_owned()]),
        });
        let (projected, bytes) = header(&mut writer);
        assert_eq!(projected, [2, 2, 1, 0, 2, 4, 0, 0, 0]);
        // The header, two timestamps, two numbers (12 bytes and a scale each), two property
        // ends, names and kinds, one name end, and the name `mbps`.
        assert_eq!(bytes, 36 + 2 * 8 + 2 * 13 + 2 * 4 + 2 * (4 + 1) + 4 + 4);
        assert!(bytes < all_bytes / 2);
        let (ids_only, _) = header(&mut BatchWriter::new(Reads {
            ids: true,
            customers: false,
            codes: false,
            properties: Some(Vec::new()),
        }));
        assert_eq!(ids_only, [2, 0, 0, 0, 0, 0, 10, 0, 1]);
        // Many names read (past the scanned few): the same batch as the few that are there.
        let mut many: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        many.push("mbps".to_owned());
        let (many_read, many_bytes) = header(&mut BatchWriter::new(Reads {
            properties: Some(many),
            ..writer.reads().clone()
        }));
        assert_eq!((many_read, many_bytes), (projected, bytes));
    }
}
