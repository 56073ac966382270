//! The usage document (input of a quote) and raw usage events.
//!
//! A quote is asked for one customer and one billing period. Usage comes either aggregated
//! (`quantities`: metric code → quantity, or per-group quantities) or raw (`events`), or both
//! (aggregated quantities then win for the metrics they name).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::decimal::Dec;
use crate::plan::{Credit, Plan};

mod scan;

/// The input of a quote or invoice preview.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Usage {
    #[serde(default)]
    pub customer: Customer,
    /// When the subscription started and how it is anchored. Absent: it starts at the period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<Subscription>,
    /// Which billing period to rate. Absent: the subscription's first period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<PeriodSelector>,
    /// Aggregated quantities by metric code: a quantity, or a list of per-group quantities.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quantities: BTreeMap<String, QuantityInput>,
    /// Raw events; those outside the period or of other customers are ignored.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "deserialize_owned_events"
    )]
    pub events: Vec<Event<'static>>,
    /// What each metric starts the period from, by metric code: the level of a time-weighted
    /// metric or the value of a carried-over `sum` (a decimal), the values active at the end
    /// of the previous period of a carried-over `unique_count` (a list of strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub carry_in: BTreeMap<String, CarryIn>,
    /// Prepaid credits held by the customer (beside the plan's), applied last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<Credit>,
    /// A mid-period change from another plan to the quoted one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_change: Option<PlanChange>,
    /// This invoice is one of several lines billing the period (progressive billing,
    /// OpenMeter's split lines). Absent: the invoice bills the whole period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_line: Option<SplitLine>,
}

/// One line of a period billed in several (progressive billing: invoices issued before the
/// period ends for the usage so far). The usage given is cumulative, from the period's start
/// to the line's `to`; each usage charge is rated on it and what the earlier lines of the
/// period billed for that charge is taken off (`round(cumulative) − billed before`, as
/// OpenMeter's delta rating books the cumulative snapshot less what was booked). Advance flat
/// fees are billed on the first line, arrears flat fees, volume charges and charge minimums
/// on the last.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SplitLine {
    /// Where this line's service period starts (where the previous line ended), a date or an
    /// RFC 3339 instant strictly inside the period. Absent: the period's start, the first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Where this line's service period ends: events at or after it belong to later lines.
    /// Absent: the period's end, the last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// What the earlier lines of this period billed, by usage charge id (amounts as billed,
    /// at the currency's minor units). Only a line with a `from` has earlier lines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub billed_before: BTreeMap<String, Dec>,
    /// When a volume charge is rated ([`SplitVolume`]).
    #[serde(default, skip_serializing_if = "SplitVolume::is_default")]
    pub volume: SplitVolume,
}

/// When a split line rates a volume charge, whose tier depends on the period's quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SplitVolume {
    /// On the period's last line only: earlier lines bill 0 for it (OpenMeter's progressively
    /// billed invoice lines, `tieredvolume.go`).
    #[default]
    LastLine,
    /// On every line, on the cumulative quantity, less what earlier lines billed: a line
    /// crossing into a cheaper tier re-prices the earlier units and can be negative
    /// (OpenMeter's delta rating of usage-based charges).
    EachLine,
}

impl SplitVolume {
    pub fn is_default(&self) -> bool {
        *self == SplitVolume::LastLine
    }
}

fn deserialize_owned_events<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<Event<'static>>, D::Error> {
    let events = Vec::<Event<'de>>::deserialize(d)?;
    Ok(events.into_iter().map(Event::into_owned).collect())
}

/// The customer being rated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default)]
    pub id: String,
    /// IANA timezone (`"Europe/Paris"`, `"Pacific/Tongatapu"`); periods are computed in it.
    /// Default `"UTC"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Free attributes, passed to custom price plugins.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A subscription to the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Start: a local date (`"2026-01-31"`, midnight in the customer's timezone), a local
    /// date-time (`"2026-01-31T09:30:00"`) or an instant with offset (RFC 3339).
    pub start: String,
    /// The date periods are anchored on (a local date or date-time); default: `start`. Periods
    /// start on the anchor's day of month, clamped to the month's last day (Jan 31 → Feb 28 →
    /// Mar 31). A start before the first anchor date makes a shorter, prorated first period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing_anchor: Option<String>,
    /// The end (a cancellation), in the forms of `start`: the period containing it ends there
    /// and is billed for its part (flat fees that prorate are prorated, usage counts up to the
    /// end); no period starts at or after it. An end on a period boundary bills the period
    /// before it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// Which period to rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum PeriodSelector {
    /// The n-th period of the subscription, from 0.
    Index { index: u32 },
    /// The period containing this instant or local date(-time).
    Containing { containing: String },
}

/// What is known of one customer beyond their events: what a server stores per customer and
/// `ratecard rate --customers` reads (customer id → setup). A customer's period is the one of
/// *their* calendar that contains the rated date.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomerSetup {
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub subscription: Option<Subscription>,
    #[serde(default)]
    pub credits: Vec<Credit>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub carry_in: BTreeMap<String, Dec>,
}

/// What a metric starts a period from: a level or value (`"10"`), or the values of a
/// carried-over unique count (`["seat_1", "seat_2"]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum CarryIn {
    Level(Dec),
    Values(Vec<String>),
}

/// By the JSON type, as [`QuantityInput`]: a string or number is a level, with the decimal's
/// own error; an array is a list of values.
impl<'de> Deserialize<'de> for CarryIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CarryInVisitor;

        impl<'de> Visitor<'de> for CarryInVisitor {
            type Value = CarryIn;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a level: a decimal string (\"10\") or a short JSON number, or a list of values (strings)",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<CarryIn, E> {
                crate::decimal::DecimalVisitor
                    .visit_str(v)
                    .map(|d| CarryIn::Level(Dec(d)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CarryIn, E> {
                Ok(CarryIn::Level(Dec(Decimal::from(v))))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CarryIn, E> {
                Ok(CarryIn::Level(Dec(Decimal::from(v))))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<CarryIn, E> {
                crate::decimal::DecimalVisitor
                    .visit_f64(v)
                    .map(|d| CarryIn::Level(Dec(d)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CarryIn, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(CarryIn::Values)
            }
        }

        deserializer.deserialize_any(CarryInVisitor)
    }
}

/// A usage's `carry_in` split by kind: the levels (decimals) and the value lists.
pub(crate) fn split_carry_in(
    carry_in: &BTreeMap<String, CarryIn>,
) -> (BTreeMap<String, Decimal>, BTreeMap<String, Vec<String>>) {
    let mut levels = BTreeMap::new();
    let mut values = BTreeMap::new();
    for (code, carried) in carry_in {
        match carried {
            CarryIn::Level(level) => {
                levels.insert(code.clone(), level.0);
            }
            CarryIn::Values(list) => {
                values.insert(code.clone(), list.clone());
            }
        }
    }
    (levels, values)
}

/// An aggregated quantity: `"1200"`, or per-group quantities.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum QuantityInput {
    Total(Dec),
    Groups(Vec<GroupQuantity>),
}

/// By the JSON type (not `untagged`, which would hide why a decimal is refused behind "data did
/// not match any variant"): a string or number is a total, with the decimal's own error; an
/// array is per-group quantities.
impl<'de> Deserialize<'de> for QuantityInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl<'de> Visitor<'de> for QuantityVisitor {
            type Value = QuantityInput;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a quantity: a decimal string (\"1200\"), a short JSON number, or a list of `{group, quantity}`",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuantityInput, E> {
                crate::decimal::DecimalVisitor
                    .visit_str(v)
                    .map(|d| QuantityInput::Total(Dec(d)))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QuantityInput, E> {
                Ok(QuantityInput::Total(Dec(Decimal::from(v))))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuantityInput, E> {
                Ok(QuantityInput::Total(Dec(Decimal::from(v))))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QuantityInput, E> {
                crate::decimal::DecimalVisitor
                    .visit_f64(v)
                    .map(|d| QuantityInput::Total(Dec(d)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<QuantityInput, A::Error> {
                Vec::<GroupQuantity>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(QuantityInput::Groups)
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// A quantity for one group of dimension values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct GroupQuantity {
    #[serde(default)]
    pub group: BTreeMap<String, String>,
    pub quantity: Dec,
    /// Individual transaction amounts, for percentage charges with per-transaction fees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<Dec>>,
}

/// A change from `previous_plan` to the quoted plan at instant `at` inside the period: advance
/// flat fees of the previous plan are credited for the unused part, the new plan's are charged
/// for the rest. Usage events before `at` are rated with the previous plan's usage charges;
/// aggregated quantities are rated with the new plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PlanChange {
    pub at: String,
    pub previous_plan: Box<Plan>,
}

/// A raw usage event: `{"id", "customer", "timestamp", "code", "properties"}`.
///
/// Strings borrow from the input where they can, so the NDJSON path allocates little.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Event<'a> {
    /// Unique id (idempotency key): a repeated id in one aggregation is counted once.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub customer: Cow<'a, str>,
    /// RFC 3339 instant (`"2026-11-05T10:00:00Z"`) or Unix seconds.
    pub timestamp: Timestamp,
    /// The event code metrics select on (`"api.request"`). `"meter"` is accepted as an alias.
    #[serde(borrow, alias = "meter")]
    pub code: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Properties::is_empty")]
    pub properties: Properties<'a>,
}

impl<'a> Event<'a> {
    /// Parses one NDJSON line (without its line break). The common shape is read by a scanner
    /// ([`scan`]); anything else, including every invalid line, by `serde_json`, so the event
    /// and the error are exactly `serde_json::from_slice`'s.
    pub fn from_json_line(line: &'a [u8]) -> Result<Event<'a>, serde_json::Error> {
        match scan::scan_event(line) {
            Some(event) => Ok(event),
            None => serde_json::from_slice(line),
        }
    }

    pub fn into_owned(self) -> Event<'static> {
        Event {
            id: Cow::Owned(self.id.into_owned()),
            customer: Cow::Owned(self.customer.into_owned()),
            timestamp: self.timestamp,
            code: Cow::Owned(self.code.into_owned()),
            properties: self.properties.into_owned(),
        }
    }
}

/// An event's properties: a small map kept as a vector sorted by name (names unique; with
/// repeated JSON keys the last wins). Events have a handful of properties, so this costs one
/// small allocation where a `BTreeMap` costs a large node, and lookups scan a few entries.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(with = "BTreeMap<String, serde_json::Value>")
)]
pub struct Properties<'a>(SmallVec<[(Cow<'a, str>, PropValue<'a>); 2]>);

impl<'a> Properties<'a> {
    pub fn get(&self, name: &str) -> Option<&PropValue<'a>> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Cow<'a, str>, &PropValue<'a>)> {
        self.0.iter().map(|(key, value)| (key, value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_owned(self) -> Properties<'static> {
        Properties(
            self.0
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                .collect(),
        )
    }

    fn from_entries(mut entries: SmallVec<[(Cow<'a, str>, PropValue<'a>); 2]>) -> Self {
        // Two properties (the usual event): order them with one comparison, usually of their
        // first bytes. The same result as the general case below.
        if let [(first, _), (second, _)] = entries.as_slice() {
            match name_order(first, second) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Greater => entries.swap(0, 1),
                std::cmp::Ordering::Equal => {
                    entries.remove(0);
                }
            }
            return Properties(entries);
        }
        // Stable sort, then keep the last of equal names (as a map insert would), in place.
        if !entries.is_sorted_by(|a, b| name_order(&a.0, &b.0).is_lt()) {
            crate::sort::sort_by(&mut entries, |a, b| a.0.cmp(&b.0));
            entries.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(later, kept);
                }
                same
            });
        }
        Properties(entries)
    }
}

/// `a.cmp(b)`, deciding by the first bytes when they differ (property names mostly do), without
/// a call to `memcmp`.
#[inline]
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

impl<'a> FromIterator<(Cow<'a, str>, PropValue<'a>)> for Properties<'a> {
    fn from_iter<I: IntoIterator<Item = (Cow<'a, str>, PropValue<'a>)>>(iter: I) -> Self {
        Properties::from_entries(iter.into_iter().collect())
    }
}

impl<'a, const N: usize> From<[(Cow<'a, str>, PropValue<'a>); N]> for Properties<'a> {
    fn from(entries: [(Cow<'a, str>, PropValue<'a>); N]) -> Self {
        Properties::from_entries(entries.into_iter().collect())
    }
}

impl<'a> std::ops::Index<&str> for Properties<'a> {
    type Output = PropValue<'a>;

    fn index(&self, name: &str) -> &PropValue<'a> {
        self.get(name).unwrap_or(&PropValue::Null)
    }
}

impl Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key.as_ref(), value)?;
        }
        map.end()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Properties<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Properties<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of properties")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = SmallVec::new();
                while let Some(BorrowedStr(key)) = map.next_key::<BorrowedStr<'a>>()? {
                    entries.push((key, map.next_value::<PropValue<'a>>()?));
                }
                Ok(Properties::from_entries(entries))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A string that borrows from the input when it has no escapes (serde's own `Cow<str>` always
/// allocates).
struct BorrowedStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BorrowedStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(BorrowedStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// An event instant in Unix milliseconds (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(with = "String"))]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        if let Some(timestamp) = Self::parse_common(text.as_bytes()) {
            return Ok(timestamp);
        }
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp: {e}"))
    }

    /// The fast path for the shape nearly every event has, `YYYY-MM-DDTHH:MM:SS[.fff…](Z|±HH:MM)`
    /// with in-range fields; anything else (leap seconds, lower-case `t`, odd widths) goes to
    /// chrono, which gives the same instant or the error. Sub-millisecond digits are truncated,
    /// as chrono's `timestamp_millis` does.
    fn parse_common(b: &[u8]) -> Option<Timestamp> {
        /// Two ASCII digits at `at`.
        fn two(head: &[u8; 19], at: usize) -> Option<i64> {
            let (tens, ones) = (head[at].wrapping_sub(b'0'), head[at + 1].wrapping_sub(b'0'));
            (tens < 10 && ones < 10).then(|| i64::from(tens) * 10 + i64::from(ones))
        }
        fn digits(b: &[u8]) -> Option<i64> {
            b.iter().try_fold(0i64, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
            })
        }
        if b.len() < 20 {
            return None;
        }
        // A fixed-size head: its fields are read without bounds checks.
        let head: &[u8; 19] = b.get(..19)?.try_into().ok()?;
        if head[4] != b'-'
            || head[7] != b'-'
            || head[10] != b'T'
            || head[13] != b':'
            || head[16] != b':'
        {
            return None;
        }
        let year = two(head, 0)? * 100 + two(head, 2)?;
        let (month, day) = (two(head, 5)?, two(head, 8)?);
        let (hour, minute, second) = (two(head, 11)?, two(head, 14)?, two(head, 17)?);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let month_days = [
            31,
            if leap { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        if !(1..=12).contains(&month)
            || day < 1
            || day > month_days[(month - 1) as usize]
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut rest = &b[19..];
        let mut millis = 0i64;
        if let [b'.', tail @ ..] = rest {
            let n_digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
            if n_digits == 0 || n_digits > 9 {
                return None;
            }
            let fraction = &tail[..n_digits];
            for position in 0..3 {
                millis = millis * 10 + fraction.get(position).map_or(0, |c| i64::from(c - b'0'));
            }
            rest = &tail[n_digits..];
        }
        let offset_minutes = match rest {
            [b'Z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let (hours, minutes) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let total = hours * 60 + minutes;
                if *sign == b'-' { -total } else { total }
            }
            _ => return None,
        };
        // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Some(Timestamp(seconds * 1000 + millis))
    }

    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_millis(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            None => self.0.to_string(),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or Unix seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                v.checked_mul(1000)
                    .map(Timestamp)
                    .ok_or_else(|| E::custom("timestamp out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(1000))
                    .map(Timestamp)
                    .ok_or_else(|| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A property value: a scalar. Nested objects and arrays are kept as `Other` and cannot be
/// aggregated, filtered or grouped on.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(with = "serde_json::Value"))]
pub enum PropValue<'a> {
    Str(Cow<'a, str>),
    /// A JSON number, exact (see [`crate::decimal`]); `Err` holds why it could not be read.
    Num(Result<Decimal, String>),
    Bool(bool),
    Null,
    Other,
}

impl PropValue<'_> {
    pub fn into_owned(self) -> PropValue<'static> {
        match self {
            PropValue::Str(s) => PropValue::Str(Cow::Owned(s.into_owned())),
            PropValue::Num(n) => PropValue::Num(n),
            PropValue::Bool(b) => PropValue::Bool(b),
            PropValue::Null => PropValue::Null,
            PropValue::Other => PropValue::Other,
        }
    }

    /// The value as a number: a JSON number, or a string holding a decimal.
    pub fn as_decimal(&self) -> Result<Decimal, String> {
        match self {
            PropValue::Num(n) => n.clone(),
            PropValue::Str(s) => crate::decimal::parse_decimal(s),
            PropValue::Bool(_) => Err("expected a number, found a boolean".to_owned()),
            PropValue::Null => Err("expected a number, found null".to_owned()),
            PropValue::Other => Err("expected a number, found an object or array".to_owned()),
        }
    }

    /// The value as text, for filters, groups and unique counts (`None` for null and nested).
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            PropValue::Str(s) => Some(Cow::Borrowed(s)),
            PropValue::Num(Ok(n)) => Some(Cow::Owned(n.normalize().to_string())),
            PropValue::Num(Err(_)) => None,
            PropValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            PropValue::Null | PropValue::Other => None,
        }
    }
}

impl Serialize for PropValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PropValue::Str(v) => s.serialize_str(v),
            PropValue::Num(Ok(n)) => s.collect_str(&n.normalize()),
            PropValue::Bool(b) => s.serialize_bool(*b),
            PropValue::Num(Err(_)) | PropValue::Null | PropValue::Other => s.serialize_unit(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PropValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = PropValue<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PropValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PropValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(PropValue::Str(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PropValue::Num(Ok(Decimal::from(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(PropValue::Num(Ok(Decimal::from(v))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(PropValue::Num(crate::decimal::from_f64_text(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(PropValue::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PropValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PropValue::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(PropValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PropValue::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_parses_borrowed_with_exact_numbers() {
        let line = r#"{"id":"e1","customer":"c1","timestamp":"2026-11-05T10:00:00+01:00","code":"api","properties":{"bytes":1500,"amount":12.34,"region":"eu","nested":{"a":1}}}"#;
        let event: Event<'_> = serde_json::from_str(line).unwrap();
        assert!(matches!(event.id, Cow::Borrowed("e1")));
        assert_eq!(
            event.timestamp,
            Timestamp::parse_rfc3339("2026-11-05T09:00:00Z").unwrap()
        );
        assert_eq!(
            event.properties["amount"].as_decimal().unwrap().to_string(),
            "12.34"
        );
        assert_eq!(event.properties["bytes"].as_text().unwrap(), "1500");
        assert_eq!(event.properties["nested"], PropValue::Other);
    }

    #[test]
    fn repeated_property_names_keep_the_last_value() {
        let line = r#"{"id":"e1","timestamp":0,"code":"api","properties":{"b":1,"a":2,"b":3,"c":4,"a":5}}"#;
        let event: Event<'_> = serde_json::from_str(line).unwrap();
        let names: Vec<&str> = event.properties.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(event.properties["a"].as_text().unwrap(), "5");
        assert_eq!(event.properties["b"].as_text().unwrap(), "3");
        let sorted = r#"{"id":"e1","timestamp":0,"code":"api","properties":{"a":1,"a":2}}"#;
        let event: Event<'_> = serde_json::from_str(sorted).unwrap();
        assert_eq!(event.properties.len(), 1);
        assert_eq!(event.properties["a"].as_text().unwrap(), "2");
    }

    /// Two properties take the fast path of `from_entries`: it orders and dedupes them as the
    /// general sort does (as a map insert would: sorted names, the last value of a name kept).
    #[test]
    fn two_properties_are_ordered_as_a_map_orders_them() {
        let names = ["", "a", "ab", "b", "ba", "value", "region", "\u{e9}", "v"];
        for x in names {
            for y in names {
                assert_eq!(name_order(x, y), x.cmp(y), "{x:?} {y:?}");
                let props: Properties<'_> = [
                    (Cow::Borrowed(x), PropValue::Bool(true)),
                    (Cow::Borrowed(y), PropValue::Bool(false)),
                ]
                .into();
                let map: BTreeMap<&str, PropValue<'_>> =
                    [(x, PropValue::Bool(true)), (y, PropValue::Bool(false))].into();
                let got: Vec<(&str, &PropValue<'_>)> =
                    props.iter().map(|(k, v)| (k.as_ref(), v)).collect();
                let want: Vec<(&str, &PropValue<'_>)> = map.iter().map(|(k, v)| (*k, v)).collect();
                assert_eq!(got, want, "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut n_fast = 0;
        for _ in 0..20_000 {
            let fraction = match next(4) {
                0 => String::new(),
                1 => format!(".{}", next(10)),
                2 => format!(".{:03}", next(1000)),
                _ => format!(".{:09}", next(1_000_000_000)),
            };
            let offset = match next(3) {
                0 => "Z".to_owned(),
                1 => format!("+{:02}:{:02}", next(25), next(61)),
                _ => format!("-{:02}:{:02}", next(24), next(60)),
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{offset}",
                1900 + next(300),
                next(14),
                next(33),
                next(25),
                next(61),
                next(62)
            );
            let chrono = chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| t.timestamp_millis())
                .ok();
            let fast = Timestamp::parse_common(text.as_bytes());
            if let Some(fast) = fast {
                n_fast += 1;
                assert_eq!(Some(fast.0), chrono, "{text}");
            }
            assert_eq!(
                Timestamp::parse_rfc3339(&text).ok().map(|t| t.0),
                chrono,
                "{text}"
            );
            // One byte replaced (a digit by a non-digit, a separator by a digit…): the fast
            // path declines or agrees.
            let mut mutated = text.clone().into_bytes();
            let at = next(mutated.len() as u64) as usize;
            mutated[at] = b"/:a 9+-.TZ"[next(10) as usize];
            let mutated = String::from_utf8(mutated).unwrap();
            if let Some(fast) = Timestamp::parse_common(mutated.as_bytes()) {
                let chrono = chrono::DateTime::parse_from_rfc3339(&mutated)
                    .map(|t| t.timestamp_millis())
                    .ok();
                assert_eq!(Some(fast.0), chrono, "{mutated}");
            }
        }
        assert!(n_fast > 5_000, "the fast path took only {n_fast} cases");
    }

    #[test]
    fn unix_seconds_and_meter_alias_are_accepted() {
        let line = r#"{"id":"e1","timestamp":1767225600,"meter":"gpu"}"#;
        let event: Event<'_> = serde_json::from_str(line).unwrap();
        assert_eq!(event.code, "gpu");
        assert_eq!(event.timestamp.to_rfc3339(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn bad_timestamp_names_the_value() {
        let line = r#"{"id":"e1","timestamp":"yesterday","code":"x"}"#;
        let err = serde_json::from_str::<Event<'_>>(line)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`yesterday` is not an RFC 3339 timestamp"),
            "{err}"
        );
    }
}
