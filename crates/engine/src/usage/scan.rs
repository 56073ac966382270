//! A scanner for the shape nearly every NDJSON event line has, in front of `serde_json`.
//!
//! `ratecard rate` parses millions of lines, and `serde_json`'s derived visitor (field matching,
//! UTF-8 checks per string, numbers through `f64` and back to text) was a third of its time.
//! [`scan_event`] reads the common shape directly: an object with the event's known keys, plain
//! strings (no escapes), numbers without exponents, and properties whose values are scalars. It
//! answers `None` for anything else, and the caller then parses the line with `serde_json` as
//! before. So the scanner never decides an error and never accepts what `serde_json` would
//! reject: when it answers, its event is the one `serde_json` gives (a property test checks this
//! on random and mutated lines, down to each decimal's scale).
//!
//! Numbers follow [`crate::decimal`]'s rule for JSON numbers: an integer is exact; a fraction is
//! read as `serde_json` reads it (an `f64`) and then as the `f64`'s shortest text. With at most
//! 15 significant digits and at most 22 fraction digits, that `f64` is the correctly rounded
//! value (one exact division) and its shortest text is the written number without trailing
//! zeros, so the scanner builds that decimal directly. Longer numbers are left to `serde_json`.

use std::borrow::Cow;

use rust_decimal::Decimal;
use smallvec::SmallVec;

use super::{Event, PropValue, Properties, Timestamp};

/// The event on `line`, or `None` when the line is not in the common shape (or is not valid:
/// `serde_json` then says why).
pub(super) fn scan_event(line: &[u8]) -> Option<Event<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner { text, at: 0 };
    s.skip_ws();
    s.eat(b'{')?;
    let (mut id, mut customer, mut timestamp, mut code, mut properties) =
        (None, None, None, None, None);
    s.skip_ws();
    if s.peek()? != b'}' {
        loop {
            s.skip_ws();
            let field = s.field()?;
            s.skip_ws();
            s.eat(b':')?;
            s.skip_ws();
            // A repeated field is an error for serde_json: leave it to it.
            match field {
                Field::Id if id.is_none() => id = Some(s.string()?),
                Field::Customer if customer.is_none() => customer = Some(s.string()?),
                Field::Timestamp if timestamp.is_none() => {
                    let text = s.string()?;
                    timestamp = Some(Timestamp::parse_rfc3339(text).ok()?);
                }
                Field::Code if code.is_none() => code = Some(s.string()?),
                Field::Properties if properties.is_none() => properties = Some(s.properties()?),
                _ => return None,
            }
            s.skip_ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    } else {
        s.at += 1;
    }
    s.skip_ws();
    if s.at != line.len() {
        return None;
    }
    Some(Event {
        id: Cow::Borrowed(id?),
        customer: Cow::Borrowed(customer.unwrap_or("")),
        timestamp: timestamp?,
        code: Cow::Borrowed(code?),
        properties: properties.unwrap_or_default(),
    })
}

/// An event field, as its key is written without escapes (`meter` is `code`'s alias).
#[derive(Clone, Copy)]
enum Field {
    Id,
    Customer,
    Timestamp,
    Code,
    Properties,
}

struct Scanner<'a> {
    /// The line, checked to be UTF-8 once, so strings are sliced from it without checks.
    text: &'a str,
    at: usize,
}

/// The length of the string body at the start of `rest` (up to its closing quote), or `None`
/// when an escape, a control character or the end of the line comes first. Eight bytes at a
/// time: strings are most of an event line.
fn string_len(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// The high bit of each byte of `word` equal to zero (exact up to the first such byte).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let mut at = 0;
    while let Some(chunk) = rest.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let stops = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')))
            // Bytes below 0x20 (control characters; bytes >= 0x80 never match).
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if stops != 0 {
            at += stops.trailing_zeros() as usize / 8;
            return (rest[at] == b'"').then_some(at);
        }
        at += 8;
    }
    let len = at
        + rest[at..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (rest[len] == b'"').then_some(len)
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// An event field's key, quotes included (any other key: `None`).
    fn field(&mut self) -> Option<Field> {
        let rest = &self.bytes()[self.at..];
        /// `key`'s length if `rest` starts with it (arrays compare inline, slices call memcmp).
        fn prefix<const N: usize>(rest: &[u8], key: &[u8; N]) -> Option<usize> {
            let head: &[u8; N] = rest.get(..N)?.try_into().ok()?;
            (head == key).then_some(N)
        }
        let (len, field) = match rest.get(1)? {
            b'i' => (prefix(rest, b"\"id\""), Field::Id),
            b'c' if rest.get(2) == Some(&b'u') => (prefix(rest, b"\"customer\""), Field::Customer),
            b'c' => (prefix(rest, b"\"code\""), Field::Code),
            b't' => (prefix(rest, b"\"timestamp\""), Field::Timestamp),
            b'm' => (prefix(rest, b"\"meter\""), Field::Code),
            b'p' => (prefix(rest, b"\"properties\""), Field::Properties),
            _ => return None,
        };
        self.at += len?;
        Some(field)
    }

    /// A string without escapes or control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = string_len(&self.bytes()[start..])?;
        self.at = start + len + 1;
        // Quotes are ASCII, so they are character boundaries of the (valid UTF-8) line.
        self.text.get(start..start + len)
    }

    /// An object of scalar properties.
    fn properties(&mut self) -> Option<Properties<'a>> {
        self.eat(b'{')?;
        let mut entries = SmallVec::new();
        self.skip_ws();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(Properties::from_entries(entries));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.eat(b':')?;
            self.skip_ws();
            let value = match self.peek()? {
                b'"' => PropValue::Str(Cow::Borrowed(self.string()?)),
                b't' => self.word(b"true", PropValue::Bool(true))?,
                b'f' => self.word(b"false", PropValue::Bool(false))?,
                b'n' => self.word(b"null", PropValue::Null)?,
                b'-' | b'0'..=b'9' => PropValue::Num(Ok(self.number()?)),
                _ => return None,
            };
            entries.push((Cow::Borrowed(key), value));
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(Properties::from_entries(entries)),
                _ => return None,
            }
        }
    }

    fn word(&mut self, word: &[u8], value: PropValue<'a>) -> Option<PropValue<'a>> {
        if !self.bytes()[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        Some(value)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, read as [`crate::decimal`] reads a JSON number, when that
    /// is exact (see the module's documentation).
    fn number(&mut self) -> Option<Decimal> {
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        let n_int = self.digits();
        if n_int == 0 || (n_int > 1 && self.bytes()[int_start] == b'0') {
            return None;
        }
        let mut digits = &self.bytes()[int_start..self.at];
        let mut n_frac = 0;
        if self.peek() == Some(b'.') {
            self.at += 1;
            n_frac = self.digits();
            if n_frac == 0 || n_frac > 22 {
                return None;
            }
            digits = &self.bytes()[int_start..self.at];
        }
        if matches!(self.peek(), Some(b'e' | b'E' | b'.')) {
            return None;
        }
        // Significant digits as serde_json counts them for its f64 (trailing zeros included).
        let n_significant = digits
            .iter()
            .filter(|&&b| b != b'.')
            .skip_while(|&&b| b == b'0')
            .count();
        if n_significant > if n_frac == 0 { 18 } else { 15 } {
            return None;
        }
        // The f64's shortest text has no trailing zeros in its fraction.
        let mut scale = n_frac;
        while scale > 0 && digits[digits.len() - 1] == b'0' {
            digits = &digits[..digits.len() - 1];
            scale -= 1;
        }
        if scale == 0 && n_frac > 0 {
            digits = &digits[..digits.len() - 1]; // the '.'
        }
        let mantissa = digits
            .iter()
            .filter(|&&b| b != b'.')
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0'));
        if negative && mantissa == 0 {
            // `-0` and `-0.0`: serde_json and the f64 text have their own views of the sign.
            return None;
        }
        let signed = if negative {
            -i128::from(mantissa)
        } else {
            i128::from(mantissa)
        };
        Decimal::try_from_i128_with_scale(signed, scale as u32).ok()
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What `serde_json` makes of the line, for comparison (`Debug` shows each decimal's scale).
    fn by_serde(line: &[u8]) -> Result<String, String> {
        serde_json::from_slice::<Event<'_>>(line)
            .map(|event| format!("{event:?}"))
            .map_err(|error| error.to_string())
    }

    fn scanned(line: &str) -> Option<String> {
        scan_event(line.as_bytes()).map(|event| format!("{event:?}"))
    }

    #[test]
    fn common_lines_are_scanned_as_serde_reads_them() {
        for line in [
            r#"{"id":"e1","customer":"c1","timestamp":"2026-11-05T10:00:00Z","code":"api.request","properties":{"value":3,"region":"eu"}}"#,
            r#"{"id":"e2","customer":"c1","timestamp":"2026-11-05T10:00:00.123+01:00","code":"compute.run","properties":{"value":12.50,"region":"us"}}"#,
            r#" { "id" : "e3" , "timestamp" : "2026-11-05T10:00:00Z" , "meter" : "x" } "#,
            r#"{"id":"é","customer":"Zürich AG","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{}}"#,
            r#"{"id":"e4","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":true,"b":false,"c":null,"d":-7,"e":0.000001,"f":100.0,"a":1}}"#,
            r#"{"properties":{"n":123456789012345678},"code":"x","timestamp":"2026-11-05T10:00:00Z","id":"e5"}"#,
            r#"{"id":"e6","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"n":0.123456789012340}}"#,
        ] {
            let scanned = scanned(line).unwrap_or_else(|| panic!("not scanned: {line}"));
            assert_eq!(Ok(scanned), by_serde(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn unusual_lines_are_left_to_serde() {
        for line in [
            // Escapes, nested values, exponents, long numbers, unknown and repeated fields,
            // Unix-seconds timestamps, negative zero, trailing text, missing fields.
            r#"{"id":"e\"1","timestamp":"2026-11-05T10:00:00Z","code":"x"}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":{"b":1}}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":[1]}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":1e3}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":0.12345678901234567}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":1234567890123456789}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":-0.0}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{"a":01}}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","extra":1}"#,
            r#"{"id":"e1","id":"e2","timestamp":"2026-11-05T10:00:00Z","code":"x"}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x","meter":"y"}"#,
            r#"{"id":"e1","timestamp":1700000000,"code":"x"}"#,
            r#"{"id":"e1","timestamp":"yesterday","code":"x"}"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z","code":"x"} x"#,
            r#"{"id":"e1","timestamp":"2026-11-05T10:00:00Z"}"#,
            r#"{"id":"e1","customer":null,"timestamp":"2026-11-05T10:00:00Z","code":"x"}"#,
        ] {
            assert_eq!(scanned(line), None, "{line}");
        }
    }

    /// Pieces of event lines, valid and not, to be assembled at random.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\"[a-z0-9 ._é\\\\\"\\u{1}-]{0,8}\"",
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{0,24})?([eE][+-]?[0-9]{1,3})?",
            "-?0[0-9]{1,3}",
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("{}".to_owned()),
            Just("[1,2]".to_owned()),
            Just("{\"k\":1}".to_owned()),
            Just("\"2026-11-05T10:00:00Z\"".to_owned()),
            Just("\"2026-02-30T10:00:00Z\"".to_owned()),
            Just("1700000000".to_owned()),
        ]
    }

    fn ws() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => Just(String::new()),
            1 => "[ \t\r\n]{1,3}",
            1 => Just("\u{b}".to_owned()),
        ]
    }

    fn properties() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(("[a-c]{1,2}", value(), ws()), 0..4),
            any::<bool>(),
        )
            .prop_map(|(entries, trailing_comma)| {
                let body: Vec<String> = entries
                    .into_iter()
                    .map(|(key, value, ws)| format!("{ws}\"{key}\"{ws}:{ws}{value}{ws}"))
                    .collect();
                let comma = if trailing_comma && !body.is_empty() {
                    ","
                } else {
                    ""
                };
                format!("{{{}{comma}}}", body.join(","))
            })
    }

    fn line() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            4 => ("\"[a-z]{1,3}\"").prop_map(|v| ("id".to_owned(), v)),
            4 => ("\"[a-zé]{0,3}\"").prop_map(|v| ("customer".to_owned(), v)),
            4 => prop_oneof![
                Just("\"2026-11-05T10:00:00Z\"".to_owned()),
                Just("\"2026-11-05T10:00:00.5-03:30\"".to_owned()),
                value(),
            ]
            .prop_map(|v| ("timestamp".to_owned(), v)),
            3 => ("\"[a-z.]{1,4}\"").prop_map(|v| ("code".to_owned(), v)),
            1 => ("\"[a-z.]{1,4}\"").prop_map(|v| ("meter".to_owned(), v)),
            4 => properties().prop_map(|v| ("properties".to_owned(), v)),
            1 => value().prop_map(|v| ("other".to_owned(), v)),
            1 => value().prop_map(|v| ("id".to_owned(), v)),
        ];
        (
            prop::collection::vec((field, ws()), 0..7),
            ws(),
            prop_oneof![8 => Just(String::new()), 1 => Just("x".to_owned()), 1 => Just("}".to_owned())],
        )
            .prop_map(|(fields, ws, trailing)| {
                let body: Vec<String> = fields
                    .into_iter()
                    .map(|((key, value), ws)| format!("{ws}\"{key}\"{ws}:{ws}{value}"))
                    .collect();
                format!("{ws}{{{}}}{ws}{trailing}", body.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whenever the scanner answers, serde_json accepts the line and reads the same event.
        #[test]
        fn scanner_agrees_with_serde(line in line(), cut in any::<prop::sample::Index>()) {
            if let Some(event) = scanned(&line) {
                prop_assert_eq!(Ok(event), by_serde(line.as_bytes()), "{}", line);
            }
            // A line cut anywhere: still never a different answer.
            let end = cut.index(line.len() + 1);
            if let Some(prefix) = line.get(..end)
                && let Some(event) = scanned(prefix)
            {
                prop_assert_eq!(Ok(event), by_serde(prefix.as_bytes()), "{}", prefix);
            }
        }

        /// The word-at-a-time string scan finds the first stop byte a plain loop finds.
        #[test]
        fn string_len_is_the_plain_scan(bytes in prop::collection::vec(
            prop_oneof![
                1 => Just(b'"'), 1 => Just(b'\\'), 1 => Just(0x1f_u8), 1 => Just(0x00),
                4 => Just(b' '), 4 => Just(0x7f), 4 => Just(0x80), 4 => Just(0xff), 40 => Just(b'a'),
            ],
            0..40,
        ), start in 0usize..8) {
            let rest = bytes.get(start.min(bytes.len())..).unwrap_or_default();
            let plain = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .filter(|&at| rest[at] == b'"');
            prop_assert_eq!(string_len(rest), plain);
        }

        /// Numbers the scanner reads are the numbers serde_json's path reads, scale included.
        #[test]
        fn numbers_agree_with_serde(number in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,23})?") {
            let line = format!(
                r#"{{"id":"e","timestamp":"2026-11-05T10:00:00Z","code":"x","properties":{{"n":{number}}}}}"#
            );
            if let Some(event) = scanned(&line) {
                prop_assert_eq!(Ok(event), by_serde(line.as_bytes()), "{}", line);
            }
        }
    }
}
