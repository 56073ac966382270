//! Currencies, minor units and rounding.
//!
//! A [`Currency`] knows how many decimal places its smallest unit has: ISO 4217 currencies carry
//! their standard minor units (USD 2, JPY 0, BHD 3), and a plan may declare custom units
//! ("credits" with scale 4). Rounding never relies on a default: a [`RoundingMode`] names the
//! strategy, and the plan's [`RoundingPolicy`] names *where* rounding happens.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// ISO 4217 currencies with their minor units. Codes not listed here default to nothing: an unknown
/// code is a validation error unless the plan declares it as a custom unit.
const ISO_4217: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// The largest scale a custom unit may declare (rust_decimal holds 28).
pub const MAX_CUSTOM_SCALE: u32 = 12;

/// A currency or custom unit, with the number of decimal places of its smallest unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency {
    pub code: String,
    pub minor_units: u32,
}

impl Currency {
    /// Looks up an ISO 4217 code (upper case).
    pub fn iso(code: &str) -> Option<Currency> {
        ISO_4217
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, minor_units)| Currency {
                code: (*c).to_owned(),
                minor_units: *minor_units,
            })
    }

    /// Resolves a code against ISO 4217 first, then the plan's declared custom units.
    pub fn resolve(code: &str, custom_units: &[CustomUnit]) -> Option<Currency> {
        Currency::iso(code).or_else(|| {
            custom_units
                .iter()
                .find(|u| u.code == code)
                .map(|u| Currency {
                    code: u.code.clone(),
                    minor_units: u.scale,
                })
        })
    }

    /// Rounds an amount to this currency's minor units with the named mode.
    pub fn round(&self, amount: Decimal, mode: RoundingMode) -> Decimal {
        mode.round(amount, self.minor_units)
    }

    /// Formats an amount already rounded to minor units, with exactly that many decimals.
    pub fn format(&self, amount: Decimal) -> String {
        crate::decimal::format_fixed(amount, self.minor_units)
    }
}

/// A unit that is not an ISO currency (prepaid "credits", "tokens"), with its declared scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomUnit {
    /// The code used as the plan's `currency` (e.g. `"credits"`).
    pub code: String,
    /// Decimal places of the smallest unit, 0 to 12.
    pub scale: u32,
}

/// How an amount is rounded to minor units. Always named: never a library default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Half away from zero: 0.125 → 0.13, -0.125 → -0.13.
    #[default]
    HalfUp,
    /// Half to even (banker's): 0.125 → 0.12, 0.135 → 0.14.
    HalfEven,
    /// Away from zero: 0.121 → 0.13.
    Up,
    /// Toward zero (truncate): 0.129 → 0.12.
    Down,
}

impl RoundingMode {
    pub fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
            RoundingMode::Down => RoundingStrategy::ToZero,
        }
    }

    pub fn round(self, amount: Decimal, scale: u32) -> Decimal {
        self.round_in_u64(amount, scale)
            .unwrap_or_else(|| amount.round_dp_with_strategy(scale, self.strategy()))
    }

    /// [`RoundingMode::round`] in 64-bit arithmetic, for a mantissa below 2⁶⁴ losing at most
    /// 19 digits: the decimal `round_dp_with_strategy` gives, to the bit (the same quotient,
    /// remainder against the half, sign and scale), without its divisions of the 96-bit
    /// mantissa digit group by digit group (a tenth of a slider's total in the browser).
    /// `None` for anything else.
    fn round_in_u64(self, amount: Decimal, scale: u32) -> Option<Decimal> {
        let diff = amount
            .scale()
            .checked_sub(scale)
            .filter(|d| (1..=19).contains(d))?;
        if amount.is_zero() {
            return None;
        }
        let mantissa = u64::try_from(amount.mantissa().unsigned_abs()).ok()?;
        let unit = 10u64.pow(diff);
        let (mut value, rest) = (mantissa / unit, mantissa % unit);
        let half = rest.cmp(&(unit / 2));
        let up = match self {
            RoundingMode::HalfUp => half.is_ge(),
            RoundingMode::HalfEven => half.is_gt() || (half.is_eq() && value & 1 == 1),
            RoundingMode::Up => rest != 0,
            RoundingMode::Down => false,
        };
        value += u64::from(up);
        Some(Decimal::from_parts(
            value as u32,
            (value >> 32) as u32,
            0,
            amount.is_sign_negative(),
            scale,
        ))
    }

    pub fn name(self) -> &'static str {
        match self {
            RoundingMode::HalfUp => "half_up",
            RoundingMode::HalfEven => "half_even",
            RoundingMode::Up => "up",
            RoundingMode::Down => "down",
        }
    }
}

/// Where amounts are rounded to minor units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RoundingLevel {
    /// Each invoice line is rounded; subtotal and total are sums of rounded lines (the default,
    /// and what a customer can add up by hand).
    #[default]
    Line,
    /// Lines keep full precision; only the subtotal, discounts, taxes and total are rounded.
    Invoice,
}

/// The plan's rounding policy: a level and a mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RoundingPolicy {
    #[serde(default)]
    pub level: RoundingLevel,
    #[serde(default)]
    pub mode: RoundingMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn iso_minor_units() {
        assert_eq!(Currency::iso("USD").unwrap().minor_units, 2);
        assert_eq!(Currency::iso("JPY").unwrap().minor_units, 0);
        assert_eq!(Currency::iso("KRW").unwrap().minor_units, 0);
        assert_eq!(Currency::iso("BHD").unwrap().minor_units, 3);
        assert_eq!(Currency::iso("KWD").unwrap().minor_units, 3);
        assert!(Currency::iso("XXX").is_none());
        assert!(Currency::iso("usd").is_none());
    }

    #[test]
    fn custom_units_resolve_after_iso() {
        let units = [CustomUnit {
            code: "credits".into(),
            scale: 4,
        }];
        assert_eq!(Currency::resolve("credits", &units).unwrap().minor_units, 4);
        assert_eq!(Currency::resolve("EUR", &units).unwrap().minor_units, 2);
    }

    #[test]
    fn every_mode_rounds_as_named() {
        let cases = [
            (RoundingMode::HalfUp, "0.125", "0.13"),
            (RoundingMode::HalfUp, "-0.125", "-0.13"),
            (RoundingMode::HalfEven, "0.125", "0.12"),
            (RoundingMode::HalfEven, "0.135", "0.14"),
            (RoundingMode::Up, "0.121", "0.13"),
            (RoundingMode::Down, "0.129", "0.12"),
        ];
        for (mode, input, expected) in cases {
            assert_eq!(mode.round(d(input), 2), d(expected), "{mode:?} {input}");
        }
    }

    #[test]
    fn iso_table_is_sorted_and_unique() {
        for pair in ISO_4217.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    proptest::proptest! {
        /// The 64-bit rounding is rust_decimal's, to the bit, in every mode.
        #[test]
        fn rounding_in_u64_is_round_dp(
            mantissa in proptest::prelude::any::<i64>(),
            wide in proptest::prelude::any::<bool>(),
            scale in 0u32..29,
            dp in 0u32..13,
        ) {
            let mantissa = if wide { i128::from(mantissa) << 30 } else { i128::from(mantissa) };
            let Ok(amount) = Decimal::try_from_i128_with_scale(mantissa, scale) else {
                return Ok(());
            };
            for mode in [RoundingMode::HalfUp, RoundingMode::HalfEven, RoundingMode::Up, RoundingMode::Down] {
                let expected = amount.round_dp_with_strategy(dp, mode.strategy());
                let rounded = mode.round(amount, dp);
                proptest::prop_assert_eq!(rounded, expected);
                proptest::prop_assert_eq!(rounded.scale(), expected.scale());
                proptest::prop_assert_eq!(rounded.is_sign_negative(), expected.is_sign_negative());
                proptest::prop_assert_eq!(rounded.to_string(), expected.to_string());
            }
        }
    }

    #[test]
    fn rounding_in_u64_at_the_half_and_the_edges() {
        for (text, dp) in [
            ("0.125", 2),
            ("-0.125", 2),
            ("0.135", 2),
            ("-0.005", 2),
            ("0.004", 2),
            ("-0.004", 2),
            ("18446744073709551615", 0),
            ("1844674407370955161.5", 0),
            ("0.18446744073709551615", 0),
            ("-1.5", 0),
            ("2.5", 0),
            ("0.0000000000000000005", 0),
            ("12.5000000", 2),
        ] {
            let amount: Decimal = text.parse().unwrap();
            for mode in [
                RoundingMode::HalfUp,
                RoundingMode::HalfEven,
                RoundingMode::Up,
                RoundingMode::Down,
            ] {
                let expected = amount.round_dp_with_strategy(dp, mode.strategy());
                let rounded = mode.round(amount, dp);
                assert_eq!(
                    (rounded, rounded.scale(), rounded.to_string()),
                    (expected, expected.scale(), expected.to_string()),
                    "{text} {mode:?}"
                );
            }
        }
    }
}
