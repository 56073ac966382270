//! The batch format, tested once: what is written reads back (a property test over events and
//! reads), and a malformed or garbage buffer is a typed error, never a panic.

use proptest::prelude::*;
use proptest::sample::Index;
use rust_decimal::Decimal;

use crate::{
    BatchError, BatchView, BatchWriter, Columns, Reads, WireEvent, WireValue, field, kind,
};

/// An owned event, for the tests.
#[derive(Clone, Debug, PartialEq)]
struct TestEvent {
    id: String,
    customer: String,
    timestamp_ms: i64,
    code: String,
    properties: Vec<(String, TestValue)>,
}

#[derive(Clone, Debug, PartialEq)]
enum TestValue {
    Str(String),
    Num(Decimal),
    Bool(bool),
    Null,
    Other,
}

impl WireEvent for &TestEvent {
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
        self.properties.iter().map(|(name, value)| {
            let value = move || match value {
                TestValue::Str(text) => WireValue::Str(text),
                TestValue::Num(n) => WireValue::Num(*n),
                TestValue::Bool(b) => WireValue::Bool(*b),
                TestValue::Null => WireValue::Null,
                TestValue::Other => WireValue::Other,
            };
            (name.as_str(), value)
        })
    }
}

fn event(id: &str, timestamp_ms: i64, code: &str, properties: &[(&str, TestValue)]) -> TestEvent {
    TestEvent {
        id: id.to_owned(),
        customer: "cus".to_owned(),
        timestamp_ms,
        code: code.to_owned(),
        properties: properties
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
    }
}

fn num(text: &str) -> TestValue {
    TestValue::Num(text.parse().unwrap())
}

fn write(events: &[TestEvent], reads: &Reads) -> (Vec<u8>, Columns) {
    let mut writer = BatchWriter::new(reads.clone());
    let bytes = writer.write(events.iter()).unwrap().to_vec();
    (bytes, writer.columns().clone())
}

/// Event `i` of a checked view, as the view holds it.
fn read_event(view: &BatchView<'_>, i: usize) -> TestEvent {
    let text = |ends: crate::U32s<'_>, text: &str| {
        let (start, end) = ends.range(i);
        text[start..end].to_owned()
    };
    let has = |bit: u32| view.fields & bit != 0;
    let (start, end) = view.property_ends.range(i);
    let properties = (start..end)
        .map(|p| {
            let slot = view.value_slots[p] as usize;
            let value = match view.property_kinds[p] {
                kind::STR => {
                    let (start, end) = view.string_ends.range(slot);
                    TestValue::Str(view.strings[start..end].to_owned())
                }
                kind::NUM => TestValue::Num(view.number(slot, false)),
                kind::NEG_NUM => TestValue::Num(view.number(slot, true)),
                kind::FALSE => TestValue::Bool(false),
                kind::TRUE => TestValue::Bool(true),
                kind::NULL => TestValue::Null,
                _ => TestValue::Other,
            };
            (view.name(view.property_names.at(p)).to_owned(), value)
        })
        .collect();
    TestEvent {
        id: if has(field::IDS) {
            text(view.id_ends, view.ids)
        } else {
            String::new()
        },
        customer: match has(field::CUSTOMERS) {
            true => view.name(view.customers.at(i)).to_owned(),
            false => String::new(),
        },
        timestamp_ms: crate::u64_at(view.timestamps_ms, i) as i64,
        code: match has(field::CODES) {
            true => view.name(view.codes.at(i)).to_owned(),
            false => String::new(),
        },
        properties,
    }
}

/// What a metric with `reads` is passed of `event`.
fn projected(event: &TestEvent, reads: &Reads) -> TestEvent {
    TestEvent {
        id: if reads.ids {
            event.id.clone()
        } else {
            String::new()
        },
        customer: if reads.customers {
            event.customer.clone()
        } else {
            String::new()
        },
        timestamp_ms: event.timestamp_ms,
        code: if reads.codes {
            event.code.clone()
        } else {
            String::new()
        },
        properties: event
            .properties
            .iter()
            .filter(|(name, _)| reads.reads_property(name))
            .cloned()
            .collect(),
    }
}

fn parse(bytes: &[u8]) -> Result<usize, BatchError> {
    let mut value_slots = Vec::new();
    BatchView::parse(bytes, &mut value_slots).map(|view| view.n_events)
}

fn value() -> impl Strategy<Value = TestValue> {
    prop_oneof![
        "[a-zé€😀]{0,6}".prop_map(TestValue::Str),
        (any::<i64>(), 0u32..=28, any::<u32>()).prop_map(|(lo, scale, hi)| {
            let negative = lo < 0;
            let lo = lo.unsigned_abs();
            TestValue::Num(Decimal::from_parts(
                lo as u32,
                (lo >> 32) as u32,
                hi,
                negative,
                scale,
            ))
        }),
        any::<bool>().prop_map(TestValue::Bool),
        Just(TestValue::Null),
        Just(TestValue::Other),
    ]
}

fn events() -> impl Strategy<Value = Vec<TestEvent>> {
    let one = (
        "[a-z0-9_é]{0,12}",
        "c[0-3]",
        any::<i64>(),
        "[xyz]{1,2}",
        proptest::collection::btree_map("p[0-9]{1,2}", value(), 0..6),
    )
        .prop_map(|(id, customer, timestamp_ms, code, properties)| TestEvent {
            id,
            customer,
            timestamp_ms,
            code,
            properties: properties.into_iter().collect(),
        });
    proptest::collection::vec(one, 0..20)
}

fn reads() -> impl Strategy<Value = Reads> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec("p[0-9]{1,2}", 0..12)),
    )
        .prop_map(|(ids, customers, codes, properties)| Reads {
            ids,
            customers,
            codes,
            properties,
        })
}

proptest! {
    /// Every event reads back as what a metric with those reads is passed of it: text, exact
    /// numbers (96-bit magnitudes, every scale, both signs), kinds, names.
    #[test]
    fn a_batch_reads_back_as_its_events(events in events(), reads in reads()) {
        let (bytes, _) = write(&events, &reads);
        let mut value_slots = Vec::new();
        let view = BatchView::parse(&bytes, &mut value_slots).unwrap();
        prop_assert_eq!(view.n_events, events.len());
        prop_assert_eq!(view.fields, reads.fields());
        for (i, event) in events.iter().enumerate() {
            prop_assert_eq!(read_event(&view, i), projected(event, &reads));
        }
        // Each name once.
        let names: Vec<&str> = (0..view.name_ends.len() as u32).map(|i| view.name(i)).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), names.len());
    }

    /// A writer reused across batches writes each as a fresh one would.
    #[test]
    fn a_reused_writer_writes_what_a_fresh_one_does(a in events(), b in events(), reads in reads()) {
        let mut writer = BatchWriter::new(reads.clone());
        writer.write(a.iter()).unwrap();
        let reused = writer.write(b.iter()).unwrap().to_vec();
        prop_assert_eq!(reused, write(&b, &reads).0);
    }

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
        let (mut bytes, _) = write(&[
            event("1", 0, "x", &[("a", num("1")), ("b", TestValue::Str("s".into()))]),
            event("é2", 5, "y", &[("a", num("-2.5")), ("c", TestValue::Null)]),
            event("3", 9, "x", &[]),
        ], &reads);
        for (at, byte) in &changes {
            let at = at.index(bytes.len());
            bytes[at] = *byte;
        }
        if let Ok(view) = BatchView::columns(&bytes, &[]) {
            let (mut fused, mut detailed) = (Vec::new(), Vec::new());
            let well_formed = view.is_well_formed(&mut fused);
            let checked = view.check(&mut detailed);
            prop_assert_eq!(well_formed, checked.is_ok(), "{:?}", checked);
            if well_formed {
                prop_assert_eq!(fused, detailed);
            }
        }
    }

    /// Garbage, a cut batch or a batch with bytes changed is an error or a batch, never a panic;
    /// what `parse` accepts can be read in full without a panic.
    #[test]
    fn garbage_is_an_error_not_a_panic(
        events in events(),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
        cut in any::<Index>(),
        changes in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..6),
    ) {
        let _ = parse(&garbage);
        let (bytes, _) = write(&events, &Reads::everything());
        let cut = cut.index(bytes.len());
        prop_assert_eq!(parse(&bytes[..cut]), Err(BatchError::Truncated));
        let mut changed = bytes.clone();
        for (at, byte) in &changes {
            let at = at.index(changed.len());
            changed[at] = *byte;
        }
        let mut value_slots = Vec::new();
        if let Ok(view) = BatchView::parse(&changed, &mut value_slots) {
            for i in 0..view.n_events.min(1_000) {
                let _ = read_event_lossy(&view, i);
            }
        }
    }
}

/// `read_event` without assuming the text columns slice at the ends (a changed batch may have
/// been accepted with other contents): reads every accessor the SDK has.
fn read_event_lossy(view: &BatchView<'_>, i: usize) -> usize {
    let (start, end) = view.property_ends.range(i);
    let mut n = view.name(view.customers.at(i)).len() + view.name(view.codes.at(i)).len();
    let (id_start, id_end) = view.id_ends.range(i);
    n += view.ids.get(id_start..id_end).map_or(0, str::len);
    for p in start..end {
        let slot = view.value_slots.get(p).copied().unwrap_or_default() as usize;
        n += view.name(view.property_names.at(p)).len();
        let _ = view.number(slot, false);
        let (s, e) = view.string_ends.range(slot);
        n += view.strings.get(s..e).map_or(0, str::len);
    }
    n
}

#[test]
fn a_malformed_batch_is_a_typed_error() {
    let (good_bytes, good) = write(
        &[event(
            "1",
            0,
            "x",
            &[("a", num("1")), ("b", TestValue::Str("s".into()))],
        )],
        &Reads::everything(),
    );
    assert_eq!(parse(&good_bytes), Ok(1));
    assert_eq!(good.bytes(), good_bytes);
    let check = |columns: Columns, error: BatchError| {
        assert_eq!(parse(&columns.bytes()), Err(error));
    };
    let mut bad = good.clone();
    bad.id_ends[0] = 1_000;
    check(bad, BatchError::TextOutOfColumn);
    let mut bad = good.clone();
    bad.codes[0] = 9;
    check(bad, BatchError::NameOutOfRange);
    let mut bad = good.clone();
    bad.property_ends[0] = 3;
    check(bad, BatchError::PropertyRangeOutOfBatch);
    let mut bad = good.clone();
    bad.property_ends[0] = 1;
    check(bad, BatchError::PropertiesLeftOver);
    let mut bad = good.clone();
    bad.number_scales[0] = 29;
    check(bad, BatchError::NumberOutOfRange);
    let mut bad = good.clone();
    bad.property_kinds[0] = 7;
    check(bad, BatchError::UnknownKind);
    let mut bad = good.clone();
    bad.fields |= 8;
    check(bad, BatchError::UnknownFields);
    // Without ids, an id column is bytes left over.
    let mut bad = good.clone();
    bad.fields &= !field::IDS;
    check(bad, BatchError::TrailingBytes);
    let mut bad = good.clone();
    bad.property_kinds[1] = kind::NULL;
    check(bad, BatchError::ValuesLeftOver);
    let mut bad = good.clone();
    bad.property_kinds[1] = kind::NUM;
    check(bad, BatchError::NumberMissing);
    let mut bad = good.clone();
    bad.property_kinds[0] = kind::STR;
    check(bad, BatchError::StringMissing);
    let mut bad = good.clone();
    bad.name_ends[0] = 2;
    bad.name_ends[1] = 1;
    check(bad, BatchError::TextOutOfColumn);
    let mut bad = good.clone();
    bad.ids = "é".to_owned();
    bad.id_ends[0] = 1;
    check(bad, BatchError::TextOutOfColumn);
    let mut bad = good.clone();
    bad.ids = "\u{ff}".to_owned();
    let mut bytes = bad.bytes();
    let at = bytes.len() - 1 - bad.strings.len();
    bytes[at - 1] = 0xff;
    assert_eq!(parse(&bytes), Err(BatchError::NotUtf8));
    for cut in [good_bytes.len() - 1, 3, 0] {
        assert_eq!(parse(&good_bytes[..cut]), Err(BatchError::Truncated));
    }
    let mut longer = good_bytes.clone();
    longer.push(0);
    assert_eq!(parse(&longer), Err(BatchError::TrailingBytes));
    // Counts whose byte sizes overflow are truncation, not an overflow.
    let mut huge = good_bytes;
    huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(parse(&huge), Err(BatchError::Truncated));
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(
        BatchError::Truncated.to_string(),
        "the buffer is shorter than its counts"
    );
    assert_eq!(
        BatchError::TooLarge { n_events: 3 }.to_string(),
        "a batch of 3 events is too large for one update: split it"
    );
}

#[test]
fn an_empty_batch_is_a_header() {
    let (bytes, _) = write(&[], &Reads::timestamps());
    assert_eq!(bytes.len(), 36);
    assert_eq!(parse(&bytes), Ok(0));
}

#[test]
fn same_text_is_byte_equality_at_every_length() {
    for n in 0..40 {
        let a: Vec<u8> = (0..n as u8).collect();
        assert!(crate::same_text(&a, &a.clone()), "length {n}");
        assert!(
            !crate::same_text(&a, &[a.as_slice(), b"x"].concat()),
            "length {n}"
        );
        for i in 0..n {
            let mut b = a.clone();
            b[i] ^= 0x80;
            assert!(!crate::same_text(&a, &b), "length {n}, byte {i} differs");
        }
    }
}
