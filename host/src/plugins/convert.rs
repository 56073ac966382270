//! Conversions between the engine's types and the contract's. Results, prices and amounts cross
//! as decimal strings; event numbers as exact fixed-point `number`s in a flat `event-batch`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ratecard_engine::Decimal;
use ratecard_engine::decimal::Dec;
use ratecard_engine::invoice::BreakdownRow;
use ratecard_engine::plugin::{PluginError, PriceRequest, PricedLine};
use ratecard_engine::usage::{Event, PropValue};
use ratecard_plugin_wire::WireValue;

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

/// What of each event a metric reads (its `reads`, the contract's `event-fields`): what the
/// host writes into its batches. The format is `ratecard-plugin-wire`'s, shared with the SDK.
pub use ratecard_plugin_wire::Reads;

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

/// Writes engine events as one `event-batch` of the contract (`ratecard-plugin-wire`'s
/// writer, with only what the metric reads), its buffers reused per metric.
#[derive(Debug, Default)]
pub struct BatchWriter(ratecard_plugin_wire::BatchWriter);

/// An engine event as the wire writer reads it.
struct Wire<'r, 'a>(&'r Event<'a>);

impl ratecard_plugin_wire::WireEvent for Wire<'_, '_> {
    #[inline]
    fn id(&self) -> &str {
        &self.0.id
    }

    #[inline]
    fn customer(&self) -> &str {
        &self.0.customer
    }

    #[inline]
    fn timestamp_ms(&self) -> i64 {
        self.0.timestamp.0
    }

    #[inline]
    fn code(&self) -> &str {
        &self.0.code
    }

    #[inline]
    fn properties<'s>(&'s self) -> impl Iterator<Item = (&'s str, impl FnOnce() -> WireValue<'s>)> {
        self.0.properties.iter().map(|(name, value)| {
            let value = move || match value {
                PropValue::Str(s) => WireValue::Str(s),
                PropValue::Num(Ok(n)) => WireValue::Num(*n),
                PropValue::Num(Err(_)) | PropValue::Other => WireValue::Other,
                PropValue::Bool(b) => WireValue::Bool(*b),
                PropValue::Null => WireValue::Null,
            };
            (name.as_ref(), value)
        })
    }
}

impl BatchWriter {
    /// A writer of batches holding what `reads` asks for.
    pub fn new(reads: impl Into<Arc<Reads>>) -> BatchWriter {
        BatchWriter(ratecard_plugin_wire::BatchWriter::new(reads))
    }

    pub fn reads(&self) -> &Reads {
        self.0.reads()
    }

    /// The `event-batch` of `events`, or an error if it does not fit the contract's 32-bit
    /// counts and offsets.
    pub fn write(&mut self, events: &[Event<'_>]) -> Result<&[u8], String> {
        self.0
            .write(events.iter().map(Wire))
            .map_err(|error| error.to_string())
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
    use ratecard_plugin_wire::kind;

    use super::*;

    fn u32_at(bytes: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap())
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
                .to_vec();
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
            let bytes = writer.write(&events).unwrap().to_vec();
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
