//! Exact decimals at the JSON boundary.
//!
//! Every amount, price and quantity in Ratecard's JSON is a [`Decimal`]. On output it is always a
//! string (`"0.00002"`), so no consumer ever sees a binary float. On input a string is preferred; a
//! JSON number is accepted only when its shortest round-trip text has at most 15 significant digits
//! (the digits an `f64` holds exactly), and that text is what is parsed, so `0.1` means exactly
//! one tenth. Anything longer must be written as a string: we refuse rather than guess.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// A decimal's text exactly as its `Display` writes it ([`text`]), or as `normalize()` then
/// `Display` write it ([`normalized_text`]), without rust_decimal's digit-by-digit division of
/// the 96-bit mantissa (a third of a quote's time went there; more in wasm, which has no
/// 128-bit arithmetic). Any width, precision or sign flag is left to rust_decimal.
#[derive(Clone, Copy, Debug)]
pub struct DecimalText {
    value: Decimal,
    normalized: bool,
}

/// `value` as `value.to_string()` writes it.
pub fn text(value: impl Into<Decimal>) -> DecimalText {
    DecimalText {
        value: value.into(),
        normalized: false,
    }
}

/// `value` as `value.normalize().to_string()` writes it (`"1.50"` → `"1.5"`, `"-0"` → `"0"`).
pub fn normalized_text(value: impl Into<Decimal>) -> DecimalText {
    DecimalText {
        value: value.into(),
        normalized: true,
    }
}

/// The decimal digits of `mantissa` at the end of `out` (one `0` for zero): nine at a time in
/// 32-bit arithmetic, 64-bit divisions for most values, 128-bit only past 2⁶⁴.
fn write_digits(mantissa: u128, out: &mut [u8; 40]) -> usize {
    const BILLION: u32 = 1_000_000_000;
    let mut pos = out.len();
    let mut rest = mantissa;
    loop {
        let mut limb = match u64::try_from(rest) {
            Ok(small) => {
                rest = u128::from(small / u64::from(BILLION));
                (small % u64::from(BILLION)) as u32
            }
            Err(_) => {
                let limb = (rest % u128::from(BILLION)) as u32;
                rest /= u128::from(BILLION);
                limb
            }
        };
        if rest == 0 {
            loop {
                pos -= 1;
                out[pos] = b'0' + (limb % 10) as u8;
                limb /= 10;
                if limb == 0 {
                    return pos;
                }
            }
        }
        for _ in 0..9 {
            pos -= 1;
            out[pos] = b'0' + (limb % 10) as u8;
            limb /= 10;
        }
    }
}

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value;
        if f.width().is_some() || f.precision().is_some() || f.sign_plus() || f.alternate() {
            return match self.normalized {
                true => fmt::Display::fmt(&value.normalize(), f),
                false => fmt::Display::fmt(&value, f),
            };
        }
        f.write_str(self.render(&mut [0; 72]))
    }
}

impl DecimalText {
    /// The text, written into `out`.
    pub fn render<'o>(&self, out: &'o mut [u8; 72]) -> &'o str {
        let value = self.value;
        if self.normalized && value.is_zero() {
            return "0";
        }
        let mut digits = [0u8; 40];
        let start = write_digits(value.mantissa().unsigned_abs(), &mut digits);
        let digits = &digits[start..];
        let scale = value.scale() as usize;
        // Integer digits, then `scale` fraction digits (zero-padded on the left).
        let (int, frac) = digits.split_at(digits.len().saturating_sub(scale));
        let frac_zeros = scale - frac.len();
        let frac = match self.normalized {
            // Nonzero: the trailing zeros of the fraction go (its digits hold a nonzero one
            // whenever the integer part is empty).
            true => {
                let kept = frac.iter().rposition(|d| *d != b'0').map_or(0, |i| i + 1);
                &frac[..kept]
            }
            false => frac,
        };
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            out[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        if value.is_sign_negative() {
            put(b"-");
        }
        put(if int.is_empty() { b"0" } else { int });
        if !frac.is_empty() || (!self.normalized && scale > 0) {
            put(b".");
            for _ in 0..frac_zeros {
                put(b"0");
            }
            put(frac);
        }
        // ASCII digits, sign and point: always UTF-8.
        std::str::from_utf8(&out[..len]).unwrap_or_default()
    }
}

/// Parses a decimal from text, accepting an optional exponent (`1e3`).
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("expected a decimal, found an empty string".to_owned());
    }
    let parsed = if trimmed.contains(['e', 'E']) {
        Decimal::from_scientific(trimmed)
    } else {
        Decimal::from_str(trimmed)
    };
    parsed.map_err(|_| format!("`{trimmed}` is not a decimal number"))
}

/// Parses a decimal written in plain notation, exactly, or says why it cannot:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most 28 decimal places, no negative zero. Nothing is
/// rounded: a value a [`Decimal`] cannot hold digit for digit is refused. This is the grammar
/// of every decimal a plugin returns (the contract's `decimal`).
pub fn parse_plain_decimal(text: &str) -> Result<Decimal, &'static str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not plain decimal notation (digits, an optional `-` and `.`)");
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err("a leading zero");
    }
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err("not plain decimal notation (digits, an optional `-` and `.`)");
        }
        if frac.len() > MAX_SCALE {
            return Err("more than 28 decimal places");
        }
    }
    let value = Decimal::from_str(text).map_err(|_| "out of the range of a decimal")?;
    // `from_str` rounds what does not fit 96 bits: the scale tells.
    if value.scale() as usize != frac.map_or(0, str::len) {
        return Err("more significant digits than a decimal holds exactly");
    }
    if value.is_zero() && text.starts_with('-') {
        return Err("a negative zero");
    }
    Ok(value)
}

/// The most decimal places a [`Decimal`] holds.
const MAX_SCALE: usize = 28;

pub(crate) fn from_f64_text(value: f64) -> Result<Decimal, String> {
    if !value.is_finite() {
        return Err("expected a decimal, found a non-finite number".to_owned());
    }
    // Written on the stack: this runs for every fractional number of every event.
    let mut buffer = StackText::default();
    let owned;
    let text = if fmt::Write::write_fmt(&mut buffer, format_args!("{value}")).is_ok() {
        buffer.as_str()
    } else {
        owned = value.to_string();
        owned.as_str()
    };
    let n_digits = text.chars().filter(|c| c.is_ascii_digit()).count();
    let n_leading_zeros = text
        .trim_start_matches('-')
        .chars()
        .take_while(|c| *c == '0' || *c == '.')
        .filter(|c| *c == '0')
        .count();
    if n_digits.saturating_sub(n_leading_zeros) > 15 {
        return Err(format!(
            "the JSON number {text} has more digits than a float holds exactly: write it as a string"
        ));
    }
    parse_decimal(text)
}

/// A small text buffer on the stack (`fmt::Write` fails when full).
struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are written, so the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

pub(crate) struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal as a string (\"12.50\") or a short JSON number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        from_f64_text(v).map_err(E::custom)
    }
}

/// Every decimal of the plan and usage formats (prices, bounds, quantities, percentages): read
/// as the module doc says (strings, or short JSON numbers from their shortest text), written as
/// its normalized string (`"0.00002"`), with one JSON Schema (`Decimal`). Reads as the
/// `Decimal` it holds (`*price`, `.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dec(pub Decimal);

impl Dec {
    pub const ZERO: Dec = Dec(Decimal::ZERO);

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

/// A `Dec` reads as the decimal it holds (`*tier.unit_price`).
impl std::ops::Deref for Dec {
    type Target = Decimal;

    fn deref(&self) -> &Decimal {
        &self.0
    }
}

/// Displayed as the decimal it holds, with its scale (`12.50`).
impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq<Decimal> for Dec {
    fn eq(&self, other: &Decimal) -> bool {
        self.0 == *other
    }
}

impl PartialOrd<Decimal> for Dec {
    fn partial_cmp(&self, other: &Decimal) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(other)
    }
}

impl std::ops::Neg for Dec {
    type Output = Decimal;

    fn neg(self) -> Decimal {
        -self.0
    }
}

impl From<Decimal> for Dec {
    fn from(value: Decimal) -> Dec {
        Dec(value)
    }
}

impl From<Dec> for Decimal {
    fn from(value: Dec) -> Decimal {
        value.0
    }
}

impl serde::Serialize for Dec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(normalized_text(self.0).render(&mut [0; 72]))
    }
}

impl<'de> serde::Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecimalVisitor).map(Dec)
    }
}

/// An amount of money at a fixed scale: serialized with exactly its scale (`"12.50"`, `"1200"`
/// for JPY, `"0.125"` for BHD). The engine rescales every amount to the currency's minor units
/// before wrapping it, so the text shows the precision that was billed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(pub Decimal);

impl serde::Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(text(self.0).render(&mut [0; 72]))
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecimalVisitor).map(Amount)
    }
}

/// JSON Schema of the decimal types (the `schema` feature; the browser build leaves it out).
#[cfg(feature = "schema")]
mod json_schema {
    use super::{Amount, Dec};

    impl schemars::JsonSchema for Dec {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Decimal".into()
        }

        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            decimal_schema()
        }
    }

    impl schemars::JsonSchema for Amount {
        fn schema_name() -> std::borrow::Cow<'static, str> {
            "Amount".into()
        }

        fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
            schemars::json_schema!({
                "description": "An amount of money as a decimal string with the scale it was billed at (\"12.50\").",
                "type": "string",
                "pattern": "^-?[0-9]+(\\.[0-9]+)?$"
            })
        }
    }

    /// The JSON Schema of a decimal: a string of digits (numbers accepted on input).
    pub fn decimal_schema() -> schemars::Schema {
        schemars::json_schema!({
            "description": "An exact decimal. Written as a string (\"0.00002\"); a JSON number with at most 15 significant digits is accepted on input.",
            "anyOf": [
                {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$"},
                {"type": "number"}
            ]
        })
    }
}

#[cfg(feature = "schema")]
pub use json_schema::decimal_schema;

/// Formats an amount with exactly `scale` decimal places (`12.5` at scale 2 → `"12.50"`).
/// The amount must already be rounded to that scale.
pub fn format_fixed(value: Decimal, scale: u32) -> String {
    let mut v = value;
    if v.scale() < scale {
        v.rescale(scale);
    }
    text(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast text is rust_decimal's `Display`, plain and normalized, for any mantissa,
        /// sign and scale (negative zero and trailing zeros included).
        #[test]
        fn decimal_text_is_displays(lo: u32, mid: u32, hi: u32, negative: bool, scale in 0u32..=28, small in 0u64..100_000) {
            for value in [
                Decimal::from_parts(lo, mid, hi, negative, scale),
                Decimal::from_parts(lo, mid, 0, negative, scale),
                Decimal::from_parts(lo, 0, 0, negative, scale),
                Decimal::from_parts(small as u32, 0, 0, negative, scale),
                Decimal::from_parts((small * 1000) as u32, 0, 0, negative, scale),
                Decimal::from_parts(0, 0, 0, negative, scale),
            ] {
                proptest::prop_assert_eq!(text(value).to_string(), value.to_string());
                proptest::prop_assert_eq!(normalized_text(value).to_string(), value.normalize().to_string());
            }
        }
    }

    #[test]
    fn plain_decimals_are_read_exactly_or_refused() {
        let ok = |text: &str| parse_plain_decimal(text).unwrap().to_string();
        assert_eq!(ok("0"), "0");
        assert_eq!(ok("12.50"), "12.50");
        assert_eq!(ok("-3"), "-3");
        assert_eq!(ok("0.000125"), "0.000125");
        assert_eq!(
            ok("0.0000000000000000000000000001"),
            "0.0000000000000000000000000001"
        );
        assert_eq!(
            ok("79228162514264337593543950335"),
            Decimal::MAX.to_string()
        );
        let refused = |text: &str| parse_plain_decimal(text).unwrap_err();
        for text in [
            "1e2", "1E-3", "+5", ".5", "5.", "-0", "-0.00", "1__0._5_", "1_0", "", "-",
        ] {
            assert!(parse_plain_decimal(text).is_err(), "`{text}` was accepted");
        }
        assert_eq!(refused("007"), "a leading zero");
        assert_eq!(refused(" 5"), refused("x"));
        assert_eq!(
            refused("0.0049999999999999999999999999999999999999"),
            "more than 28 decimal places"
        );
        assert_eq!(
            refused("79228162514264337593543950336"),
            "out of the range of a decimal"
        );
        assert_eq!(
            refused("7922816251426433759354395033.51"),
            "more significant digits than a decimal holds exactly"
        );
    }

    #[test]
    fn floats_are_read_from_their_shortest_text_short_or_long() {
        let text = |v: f64| from_f64_text(v).map(|d| d.to_string());
        assert_eq!(text(12.34).unwrap(), "12.34");
        assert_eq!(text(-0.000125).unwrap(), "-0.000125");
        assert_eq!(text(1e14).unwrap(), "100000000000000");
        // Longer than the stack buffer: written on the heap, then refused with the reason.
        assert!(
            text(1e300)
                .unwrap_err()
                .contains("more digits than a float holds")
        );
        assert_eq!(from_f64_text(5e-324), parse_decimal(&5e-324f64.to_string()));
        assert!(text(f64::NAN).is_err());
    }

    fn de(json: &str) -> Result<Decimal, String> {
        serde_json::from_str::<Dec>(json)
            .map(|d| d.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strings_and_short_numbers_parse_exactly() {
        assert_eq!(de("\"0.00002\"").unwrap().to_string(), "0.00002");
        assert_eq!(de("0.1").unwrap().to_string(), "0.1");
        assert_eq!(de("12").unwrap().to_string(), "12");
        assert_eq!(de("\"1e3\"").unwrap(), Decimal::from(1000));
        assert_eq!(de("\"-5.50\"").unwrap().to_string(), "-5.50");
    }

    #[test]
    fn long_numbers_and_garbage_are_refused_with_a_reason() {
        let err = de("0.12345678901234567").unwrap_err();
        assert!(err.contains("write it as a string"), "{err}");
        let err = de("\"twelve\"").unwrap_err();
        assert!(err.contains("`twelve` is not a decimal"), "{err}");
        assert!(de("true").is_err());
    }

    #[test]
    fn output_is_a_normalized_string() {
        let json = serde_json::to_string(&Dec(Decimal::new(1250, 2))).unwrap();
        assert_eq!(json, "\"12.5\"");
        assert_eq!(format_fixed(Decimal::new(125, 1), 2), "12.50");
        assert_eq!(format_fixed(Decimal::new(7, 0), 0), "7");
    }
}
