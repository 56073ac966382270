//! Laws of the engine, checked on generated plans and usage (proptest).
//!
//! Each property names the law it checks. Generated plans are valid by construction (the
//! generators respect the validator's rules: increasing tier bounds, flat amounts at the
//! currency's minor units, percents in range); `no_panic_*` feeds arbitrary and mutated JSON
//! instead, where any `Ok` or `Err` is fine and only a panic fails.
//!
//! Failures found by proptest are recorded in `laws.proptest-regressions` next to this file and
//! replayed first on every run: commit that file.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use ratecard_engine::Decimal;
use ratecard_engine::decimal::Dec;
use ratecard_engine::invoice::Invoice;
use ratecard_engine::money::{Currency, RoundingMode};
use ratecard_engine::plan::{Plan, Tier, TierConvention};
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::price;
use ratecard_engine::rate::quote;
use ratecard_engine::usage::Usage;
use ratecard_engine::validate::validate_plan;
use serde_json::{Value, json};

const CURRENCIES: [(&str, u32); 3] = [("USD", 2), ("JPY", 0), ("BHD", 3)];
const MODES: [&str; 4] = ["half_up", "half_even", "up", "down"];
const LEVELS: [&str; 2] = ["line", "invoice"];

/// `cases` per property, unless `PROPTEST_CASES` asks for more (or fewer) for a deeper run.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

fn dec(mantissa: i64, scale: u32) -> Decimal {
    Decimal::new(mantissa, scale)
}

fn text(value: Decimal) -> Value {
    Value::String(value.to_string())
}

fn mode_of(name: &str) -> RoundingMode {
    match name {
        "half_up" => RoundingMode::HalfUp,
        "half_even" => RoundingMode::HalfEven,
        "up" => RoundingMode::Up,
        _ => RoundingMode::Down,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators of valid plans and usage.

/// A non-negative unit price with up to 6 decimals (sub-cent prices included).
fn unit_price() -> impl Strategy<Value = Decimal> {
    (0i64..200_000, 0u32..=6).prop_map(|(m, s)| dec(m, s))
}

/// A non-negative amount at the currency's minor units.
fn amount(minor_units: u32) -> impl Strategy<Value = Decimal> {
    (0i64..100_000).prop_map(move |m| dec(m, minor_units))
}

/// A non-negative quantity with up to 3 decimals.
fn quantity() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (0i64..2_000_000, 0u32..=3).prop_map(|(m, s)| dec(m, s)),
        // Small quantities land on and around low tier bounds.
        (0i64..50).prop_map(|m| dec(m, 0)),
    ]
}

/// 1 to 5 tiers with strictly increasing bounds, the last unbounded.
fn tiers(minor_units: u32) -> impl Strategy<Value = Vec<Tier>> {
    prop::collection::vec(
        (
            (1i64..5_000, 0u32..=2),
            unit_price(),
            amount(minor_units),
            any::<bool>(),
        ),
        1..=5,
    )
    .prop_map(|specs| {
        let last = specs.len() - 1;
        let mut bound = Decimal::ZERO;
        specs
            .into_iter()
            .enumerate()
            .map(
                |(tier_idx, ((step, scale), unit_price, flat_fee, has_fee))| {
                    bound += dec(step, scale);
                    Tier {
                        from: None,
                        up_to: (tier_idx != last).then_some(Dec(bound)),
                        unit_price: Dec(unit_price),
                        flat_fee: Dec(if has_fee { flat_fee } else { Decimal::ZERO }),
                    }
                },
            )
            .collect()
    })
}

fn tiers_json(tiers: &[Tier]) -> Value {
    Value::Array(
        tiers
            .iter()
            .map(|t| {
                json!({
                    "up_to": t.up_to.map(|d| text(d.0)),
                    "unit_price": text(t.unit_price.0),
                    "flat_fee": text(t.flat_fee.0),
                })
            })
            .collect(),
    )
}

/// A price model JSON for a usage charge, or a flat fee.
fn model(minor_units: u32) -> impl Strategy<Value = Value> {
    prop_oneof![
        amount(minor_units).prop_map(|a| json!({"type": "flat", "amount": text(a)})),
        unit_price().prop_map(|p| json!({"type": "per_unit", "unit_price": text(p)})),
        tiers(minor_units).prop_map(|t| json!({"type": "graduated", "tiers": tiers_json(&t)})),
        tiers(minor_units).prop_map(|t| json!({"type": "volume", "tiers": tiers_json(&t)})),
        (
            (1i64..1000, 0u32..=1),
            unit_price(),
            prop::option::of(quantity()),
            any::<bool>()
        )
            .prop_map(|((size, scale), price, free, up)| {
                let mut model = json!({
                    "type": "package",
                    "package_size": text(dec(size, scale)),
                    "package_price": text(price),
                    "rounding": if up { "up" } else { "down" },
                });
                if let Some(free) = free {
                    model["free_units"] = text(free);
                }
                model
            }),
    ]
}

/// Customer timezones: UTC, DST in both hemispheres, UTC+13 and UTC+14.
const TIMEZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Sydney",
    "Pacific/Tongatapu",
    "Pacific/Kiritimati",
];

/// Subscription starts (and billing anchors): month ends, a leap day, a DST change, mid-day.
const STARTS: &[&str] = &[
    "2026-01-31",
    "2024-02-29",
    "2026-03-08",
    "2026-03-29T02:30:00",
    "2026-10-25",
    "2026-11-15T13:45:00",
    "2027-12-31",
];

/// A generated plan and usage, with what the laws need to know about them.
#[derive(Clone, Debug)]
struct Case {
    plan: Plan,
    usage: Usage,
    minor_units: u32,
    mode: RoundingMode,
    invoice_level: bool,
}

prop_compose! {
    fn charge(minor_units: u32)(
        model_value in model(minor_units),
        aggregation_sum in any::<bool>(),
        quantity in quantity(),
        included in prop::option::of(quantity()),
        bounds in prop::option::of((amount(minor_units), amount(minor_units))),
        has_minimum in any::<bool>(),
    ) -> (Value, Value, Decimal) {
        let mut charge = json!({"model": model_value});
        if charge["model"]["type"] != "flat" {
            if let Some(included) = included {
                charge["included"] = text(included);
            }
            if let Some((a, b)) = bounds {
                // A minimum, a maximum, or both (ordered).
                let (min, max) = (a.min(b), a.max(b));
                if has_minimum {
                    charge["minimum"] = text(min);
                } else {
                    charge["maximum"] = text(max);
                }
            }
        }
        let aggregation = if aggregation_sum { json!({"type": "sum", "property": "v"}) } else { json!({"type": "count"}) };
        (charge, aggregation, quantity)
    }
}

fn discount(minor_units: u32) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            (1i64..=10_000).prop_map(|m| json!({"percent": text(dec(m, 2))})),
            amount(minor_units).prop_map(|a| json!({"amount": text(a)})),
        ],
        prop::option::of(0u32..3),
        any::<bool>(),
    )
        .prop_map(|(mut discount, duration, only_first_charge)| {
            if let Some(duration) = duration {
                discount["duration_periods"] = json!(duration);
            }
            if only_first_charge {
                discount["charges"] = json!(["c0"]);
            }
            discount
        })
}

fn tax() -> impl Strategy<Value = Value> {
    ((0i64..=10_000).prop_map(|m| dec(m, 2)), any::<bool>())
        .prop_map(|(percent, inclusive)| json!({"percent": text(percent), "inclusive": inclusive}))
}

prop_compose! {
    fn case()(currency_idx in 0usize..3, mode_idx in 0usize..4, level_idx in 0usize..2)(
        currency_idx in Just(currency_idx),
        mode_idx in Just(mode_idx),
        level_idx in Just(level_idx),
        charges in prop::collection::vec(charge(CURRENCIES[currency_idx].1), 1..=6),
        discounts in prop::collection::vec(discount(CURRENCIES[currency_idx].1), 0..=2),
        taxes in prop::collection::vec(tax(), 0..=2),
        credits in prop::collection::vec(amount(CURRENCIES[currency_idx].1), 0..=2),
        customer_credits in prop::collection::vec(amount(CURRENCIES[currency_idx].1), 0..=1),
        commitment in prop::option::of(amount(CURRENCIES[currency_idx].1)),
        period_index in 0u32..4,
        calendar in (prop::sample::select(TIMEZONES), prop::sample::select(STARTS), prop::option::of(prop::sample::select(STARTS)), prop_oneof![3 => Just(0u32), 1 => 1u32..40]),
    ) -> Case {
        let (timezone, start, anchor, trial_days) = calendar;
        let (currency, minor_units) = CURRENCIES[currency_idx];
        let mut metrics = Vec::new();
        let mut charge_values = Vec::new();
        let mut quantities = serde_json::Map::new();
        for (charge_idx, (mut charge, aggregation, quantity)) in charges.into_iter().enumerate() {
            charge["id"] = json!(format!("c{charge_idx}"));
            if charge["model"]["type"] != "flat" {
                let code = format!("m{charge_idx}");
                metrics.push(json!({"code": code, "aggregation": aggregation}));
                charge["metric"] = json!(code);
                quantities.insert(code, text(quantity));
            }
            charge_values.push(charge);
        }
        let mut plan = json!({
            "id": "generated",
            "currency": currency,
            "interval": "month",
            "rounding": {"level": LEVELS[level_idx], "mode": MODES[mode_idx]},
            "metrics": metrics,
            "charges": charge_values,
            "discounts": discounts.into_iter().enumerate().map(|(i, mut d)| { d["id"] = json!(format!("d{i}")); d }).collect::<Vec<_>>(),
            "taxes": taxes.into_iter().enumerate().map(|(i, mut t)| { t["id"] = json!(format!("t{i}")); t }).collect::<Vec<_>>(),
            "credits": credits.into_iter().enumerate().map(|(i, a)| json!({"id": format!("k{i}"), "amount": text(a)})).collect::<Vec<_>>(),
            "trial_days": trial_days,
        });
        if let Some(commitment) = commitment {
            plan["minimum_commitment"] = text(commitment);
        }
        let mut subscription = json!({"start": start});
        if let Some(anchor) = anchor.filter(|a| *a >= start) {
            subscription["billing_anchor"] = json!(anchor);
        }
        let usage = json!({
            "customer": {"id": "cust-1", "timezone": timezone},
            "subscription": subscription,
            "period": {"index": period_index},
            "quantities": quantities,
            "credits": customer_credits.into_iter().map(|a| json!({"id": "wallet", "amount": text(a)})).collect::<Vec<_>>(),
        });
        let plan: Plan = serde_json::from_value(plan).expect("generated plan parses");
        let usage: Usage = serde_json::from_value(usage).expect("generated usage parses");
        Case {
            plan,
            usage,
            minor_units,
            mode: mode_of(MODES[mode_idx]),
            invoice_level: level_idx == 1,
        }
    }
}

/// Each charge's billed amount on an invoice (its lines, `billed_before` ones included).
fn charge_amounts(invoice: &Invoice) -> std::collections::BTreeMap<String, Decimal> {
    let mut amounts = std::collections::BTreeMap::new();
    for line in &invoice.lines {
        *amounts
            .entry(line.charge_id.clone())
            .or_insert(Decimal::ZERO) += line.amount.0;
    }
    amounts
}

fn quote_ok(case: &Case) -> Invoice {
    let report = validate_plan(&case.plan);
    assert!(
        report.is_ok(),
        "generated plan is invalid: {:?}",
        report.errors
    );
    match quote(&case.plan, &case.usage, &NoPlugins) {
        Ok(invoice) => invoice,
        Err(error) => panic!("quote of a valid generated plan failed: {error}"),
    }
}

/// An amount as billed: at most `minor_units` decimals, and unchanged by rounding again.
fn assert_billed(what: &str, value: Decimal, minor_units: u32, mode: RoundingMode) {
    assert!(
        value.scale() <= minor_units,
        "{what} = {value} has more than {minor_units} decimals"
    );
    assert_eq!(
        mode.round(value, minor_units),
        value,
        "{what} = {value} is not rounded to {minor_units} dp"
    );
}

// ---------------------------------------------------------------------------------------------
// Invoice laws.

proptest! {
    #![proptest_config(config(192))]

    /// Lines sum to the subtotal under line rounding; under invoice rounding the subtotal is the
    /// rounded sum of the exact line amounts. Every line's billed amount is its exact amount
    /// rounded (line level) or unchanged (invoice level).
    #[test]
    fn lines_sum_to_the_subtotal(case in case()) {
        let invoice = quote_ok(&case);
        let subtotal = invoice.subtotal.0;
        let exact_sum: Decimal = invoice.lines.iter().map(|l| l.exact_amount.0).sum();
        if case.invoice_level {
            for line in &invoice.lines {
                prop_assert_eq!(line.amount.0, line.exact_amount.0, "line {}", line.charge_id);
            }
            prop_assert_eq!(subtotal, case.mode.round(exact_sum, case.minor_units));
        } else {
            for line in &invoice.lines {
                prop_assert_eq!(line.amount.0, case.mode.round(line.exact_amount.0, case.minor_units), "line {}", line.charge_id);
                assert_billed(&format!("line {}", line.charge_id), line.amount.0, case.minor_units, case.mode);
                prop_assert_eq!(line.amount.0.scale(), case.minor_units, "line {} is not written at the currency's scale", line.charge_id);
            }
            let line_sum: Decimal = invoice.lines.iter().map(|l| l.amount.0).sum();
            prop_assert_eq!(subtotal, line_sum);
        }
        // Every line's breakdown adds up to its exact amount.
        for line in &invoice.lines {
            let rows: Decimal = line.breakdown.iter().map(|r| r.amount.0).sum();
            prop_assert_eq!(rows, line.exact_amount.0, "breakdown of line {}", line.charge_id);
        }
    }

    /// total = subtotal − discounts + exclusive taxes − credits, never negative; every finishing
    /// amount is at the currency's minor units; credits applied never exceed the pre-credit
    /// total, and each credit's applied + remaining is its amount.
    #[test]
    fn total_is_subtotal_minus_discounts_plus_taxes_minus_credits(case in case()) {
        let invoice = quote_ok(&case);
        let (minor, mode) = (case.minor_units, case.mode);
        let subtotal = invoice.subtotal.0;
        prop_assert!(subtotal >= Decimal::ZERO, "non-negative prices gave subtotal {}", subtotal);
        let discounts: Decimal = invoice.discounts.iter().map(|d| d.amount.0).sum();
        let exclusive: Decimal = invoice.taxes.iter().filter(|t| !t.inclusive).map(|t| t.amount.0).sum();
        let credits: Decimal = invoice.credits.iter().map(|c| c.applied.0).sum();
        prop_assert!(discounts <= subtotal, "discounts {} above subtotal {}", discounts, subtotal);
        let before_credits = subtotal - discounts + exclusive;
        prop_assert!(credits <= before_credits, "credits applied {} exceed the pre-credit total {}", credits, before_credits);
        prop_assert_eq!(invoice.total.0, before_credits - credits);
        prop_assert!(invoice.total.0 >= Decimal::ZERO);
        for discount in &invoice.discounts {
            prop_assert!(discount.amount.0 >= Decimal::ZERO);
        }
        // Every tax is on the net: the discounted subtotal less the inclusive taxes, which add
        // up to exactly that difference (no rounding cent lost or made).
        let gross = subtotal - discounts;
        let inclusive: Decimal = invoice.taxes.iter().filter(|t| t.inclusive).map(|t| t.amount.0).sum();
        for tax in &invoice.taxes {
            prop_assert_eq!(tax.taxable.0, gross - inclusive, "tax {} is on the net", &tax.id);
            prop_assert!(tax.amount.0 >= Decimal::ZERO, "tax {} is negative", &tax.id);
        }
        let plan_and_customer_credits: Vec<Decimal> =
            case.plan.credits.iter().chain(&case.usage.credits).map(|c| c.amount.0).collect();
        prop_assert_eq!(invoice.credits.len(), plan_and_customer_credits.len());
        for (credit, granted) in invoice.credits.iter().zip(plan_and_customer_credits) {
            prop_assert!(credit.applied.0 >= Decimal::ZERO && credit.applied.0 <= granted);
            prop_assert_eq!(credit.applied.0 + credit.remaining.0, granted, "credit {}", &credit.id);
        }
        let mut finishing = vec![("subtotal".to_owned(), invoice.subtotal.0), ("total".to_owned(), invoice.total.0)];
        finishing.extend(invoice.discounts.iter().map(|d| (format!("discount {}", d.id), d.amount.0)));
        finishing.extend(invoice.taxes.iter().map(|t| (format!("tax {}", t.id), t.amount.0)));
        finishing.extend(invoice.taxes.iter().map(|t| (format!("taxable {}", t.id), t.taxable.0)));
        finishing.extend(invoice.credits.iter().map(|c| (format!("credit {}", c.id), c.applied.0)));
        for (what, value) in finishing {
            assert_billed(&what, value, minor, mode);
            prop_assert_eq!(value.scale(), minor, "{} = {} is not written at the currency's scale", what, value);
        }
    }

    /// Same input → byte-identical JSON, also after a JSON round trip of the inputs (the output
    /// depends on values, not on how they were written).
    #[test]
    fn same_input_gives_byte_identical_json(case in case()) {
        let first = serde_json::to_vec(&quote_ok(&case)).expect("serialize");
        let second = serde_json::to_vec(&quote_ok(&case)).expect("serialize");
        prop_assert_eq!(&first, &second);
        let round_trip = Case {
            plan: serde_json::from_slice(&serde_json::to_vec(&case.plan).expect("plan")).expect("plan round trip"),
            usage: serde_json::from_slice(&serde_json::to_vec(&case.usage).expect("usage")).expect("usage round trip"),
            ..case.clone()
        };
        let third = serde_json::to_vec(&quote_ok(&round_trip)).expect("serialize");
        prop_assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(&third));
    }
}

// ---------------------------------------------------------------------------------------------
// Price and rounding laws.

proptest! {
    #![proptest_config(config(256))]

    /// Graduated price never decreases as usage grows (non-negative prices and fees), under
    /// both tier conventions; the same holds for the billed line of a one-charge plan.
    #[test]
    fn graduated_price_never_decreases_with_usage(
        tiers in tiers(2),
        q1 in quantity(),
        q2 in quantity(),
        lower_inclusive in any::<bool>(),
    ) {
        let (low, high) = (q1.min(q2), q1.max(q2));
        let convention = if lower_inclusive { TierConvention::LowerInclusive } else { TierConvention::UpperInclusive };
        let at_low = price::graduated(&tiers, low, convention, Decimal::ONE).expect("no overflow");
        let at_high = price::graduated(&tiers, high, convention, Decimal::ONE).expect("no overflow");
        prop_assert!(at_low.amount <= at_high.amount, "{} units cost {} but {} units cost {}", low, at_low.amount, high, at_high.amount);

        let quote_at = |q: Decimal| {
            let plan = json!({
                "id": "g", "currency": "USD",
                "tier_convention": if lower_inclusive { "lower_inclusive" } else { "upper_inclusive" },
                "metrics": [{"code": "m", "aggregation": {"type": "count"}}],
                "charges": [{"id": "c", "metric": "m", "model": {"type": "graduated", "tiers": tiers_json(&tiers)}}],
            });
            let usage = json!({"period": {"index": 0}, "subscription": {"start": "2026-11-01"}, "quantities": {"m": text(q)}});
            let plan: Plan = serde_json::from_value(plan).expect("plan");
            let usage: Usage = serde_json::from_value(usage).expect("usage");
            quote(&plan, &usage, &NoPlugins).expect("quote").total.0
        };
        prop_assert!(quote_at(low) <= quote_at(high));
    }

    /// Lago's prorated graduated calculator ends on any events, without a panic, and one
    /// addition held the whole cycle (prorated = full) is priced as the graduated tiers price
    /// it. (Several additions need not be: Lago moves usage resting on a range's top to the
    /// next range when an addition follows, so 7 + 28 + 1 over ranges ending at 34 and 35
    /// prices 2 units in the third range, and the port keeps that.)
    #[test]
    fn lago_prorated_graduated_ends_and_matches_graduated_when_held_whole(
        bounds in prop::collection::btree_set(1i64..40, 0..4),
        prices in prop::collection::vec((0i64..2000, 0i64..500), 5),
        added in prop::collection::vec(1i64..60, 0..2),
        mixed in prop::collection::vec((-30i64..30, 0i64..=30), 0..8),
    ) {
        let bounds: Vec<i64> = bounds.into_iter().collect();
        let tiers: Vec<Tier> = (0..=bounds.len())
            .map(|idx| Tier {
                from: None,
                up_to: bounds.get(idx).map(|b| Dec(Decimal::from(*b))),
                unit_price: Dec(dec(prices[idx].0, 2)),
                flat_fee: Dec(dec(prices[idx].1, 2)),
            })
            .collect();
        let whole: Vec<(Decimal, Decimal)> =
            added.iter().map(|v| (Decimal::from(*v), Decimal::from(*v))).collect();
        let lago: price::Priced = price::lago_prorated_graduated_into(&tiers, &whole).expect("ends");
        let total: i64 = added.iter().sum();
        if total > 0 {
            let graduated = price::graduated(&tiers, Decimal::from(total), TierConvention::UpperInclusive, Decimal::ONE)
                .expect("no overflow");
            prop_assert_eq!(lago.amount, graduated.amount, "{:?} over {:?}", added, bounds);
        }
        let dated: Vec<(Decimal, Decimal)> = mixed
            .iter()
            .map(|(v, days)| (Decimal::from(*v), Decimal::from(*v * *days) / Decimal::from(30)))
            .collect();
        let priced: Result<price::Priced, _> = price::lago_prorated_graduated_into(&tiers, &dated);
        prop_assert!(priced.is_ok(), "{:?}", mixed);
    }

    /// Progressive billing: three split lines of a period (each rating the cumulative usage so
    /// far, less what the earlier lines billed per usage charge; volume charges on the last
    /// line or on each) bill each charge, and the period's subtotal, exactly what one invoice
    /// of the whole period bills.
    #[test]
    fn split_lines_add_up_to_the_period(
        case in case(),
        points in (1i64..4, 4i64..8),
        shares in (0i64..=4, 0i64..=4),
        volume_each_line in any::<bool>(),
    ) {
        let mut plan = case.plan.clone();
        plan.discounts.clear();
        plan.minimum_commitment = None;
        plan.rounding.level = ratecard_engine::money::RoundingLevel::Line;
        let whole = quote(&plan, &case.usage, &NoPlugins).expect("whole period");
        let instant = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text).expect("period bounds").timestamp()
        };
        let (start, end) = (instant(&whole.period.start), instant(&whole.period.end));
        prop_assume!(end - start >= 8);
        let at = |eighths: i64| {
            chrono::DateTime::from_timestamp(start + (end - start) * eighths / 8, 0)
                .expect("in range")
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        };
        let (t1, t2) = (at(points.0), at(points.1));
        let flat: Vec<&str> = plan
            .charges
            .iter()
            .filter(|c| matches!(c.model, ratecard_engine::plan::PriceModel::Flat { .. }))
            .map(|c| c.id.as_str())
            .collect();
        let scaled = |quarters: i64| {
            let mut usage = case.usage.clone();
            for quantity in usage.quantities.values_mut() {
                if let ratecard_engine::usage::QuantityInput::Total(q) = quantity {
                    *q = Dec(q.0 * Decimal::from(quarters) / Decimal::from(4));
                }
            }
            usage
        };
        let mut billed = std::collections::BTreeMap::<String, Decimal>::new();
        let mut subtotal = Decimal::ZERO;
        let lines = [
            (None, Some(t1.clone()), scaled(shares.0.min(shares.1))),
            (Some(t1), Some(t2.clone()), scaled(shares.0.max(shares.1))),
            (Some(t2), None, case.usage.clone()),
        ];
        for (from, to, mut usage) in lines {
            let billed_before = if from.is_some() {
                billed
                    .iter()
                    .filter(|(id, _)| !flat.contains(&id.as_str()))
                    .map(|(id, amount)| (id.clone(), Dec(*amount)))
                    .collect()
            } else {
                Default::default()
            };
            let volume = if volume_each_line {
                ratecard_engine::usage::SplitVolume::EachLine
            } else {
                ratecard_engine::usage::SplitVolume::LastLine
            };
            usage.split_line =
                Some(ratecard_engine::usage::SplitLine { from, to, billed_before, volume });
            let invoice = quote(&plan, &usage, &NoPlugins).expect("split line");
            for (id, amount) in charge_amounts(&invoice) {
                *billed.entry(id).or_insert(Decimal::ZERO) += amount;
            }
            subtotal += invoice.subtotal.0;
        }
        prop_assert_eq!(&billed, &charge_amounts(&whole));
        prop_assert_eq!(subtotal, whole.subtotal.0);
    }

    /// Rounding is idempotent, leaves at most `scale` decimals, moves a value by less than one
    /// minor unit, and goes the way its mode names.
    #[test]
    fn rounding_is_idempotent_and_bounded(
        parts in (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28),
        scale in 0u32..=12,
        mode_idx in 0usize..4,
    ) {
        let (lo, mid, hi, negative, value_scale) = parts;
        let value = Decimal::from_parts(lo, mid, hi, negative, value_scale);
        let mode = mode_of(MODES[mode_idx]);
        let once = mode.round(value, scale);
        let twice = mode.round(once, scale);
        prop_assert_eq!(once, twice);
        prop_assert!(once.scale() <= scale);
        let unit = Decimal::new(1, scale);
        prop_assert!((once - value).abs() < unit, "{:?} moved {} to {}", mode, value, once);
        match mode {
            RoundingMode::Down => prop_assert!(once.abs() <= value.abs()),
            RoundingMode::Up => prop_assert!(once.abs() >= value.abs()),
            RoundingMode::HalfUp | RoundingMode::HalfEven => prop_assert!((once - value).abs() * Decimal::TWO <= unit),
        }
        // Currencies round the same way at their minor units.
        for (code, minor_units) in CURRENCIES {
            let currency = Currency::iso(code).expect("iso");
            prop_assert_eq!(currency.minor_units, minor_units);
            prop_assert_eq!(currency.round(value, mode), mode.round(value, minor_units));
        }
    }

    /// Volume cliff lint: when a tier's unit price drops enough that the bill just above its
    /// lower bound is below the bill at the bound, `validate_plan` warns `volume_cliff` on it.
    #[test]
    fn volume_price_drop_is_linted_as_a_cliff(
        bound in (1i64..10_000, 0u32..=2).prop_map(|(m, s)| dec(m, s)),
        high_price in (2i64..100_000, 0u32..=4).prop_map(|(m, s)| dec(m, s)),
        drop_percent in 1i64..=100,
        first_fee in amount(2),
        extra_tiers in 0usize..3,
    ) {
        // Lower price above the bound, and no fee that would make up for the drop.
        let low_price = high_price * Decimal::from(100 - drop_percent) / Decimal::ONE_HUNDRED;
        let mut tiers = vec![
            json!({"up_to": text(bound), "unit_price": text(high_price), "flat_fee": text(first_fee)}),
        ];
        let mut upper = bound;
        for _ in 0..extra_tiers {
            upper += Decimal::ONE_HUNDRED;
            tiers.push(json!({"up_to": text(upper), "unit_price": text(low_price.round_dp(12))}));
        }
        tiers.push(json!({"up_to": null, "unit_price": text(low_price.round_dp(12))}));
        let plan = json!({
            "id": "cliff", "currency": "USD",
            "metrics": [{"code": "m", "aggregation": {"type": "count"}}],
            "charges": [{"id": "c", "metric": "m", "model": {"type": "volume", "tiers": tiers}}],
        });
        let plan: Plan = serde_json::from_value(plan).expect("plan");
        let report = validate_plan(&plan);
        prop_assert!(report.is_ok(), "{:?}", report.errors);
        let cliff = report
            .warnings
            .iter()
            .find(|w| w.code == ratecard_engine::validate::IssueCode::VolumeCliff);
        prop_assert!(cliff.is_some(), "no volume_cliff warning: {:?}", report.warnings);
        prop_assert_eq!(&cliff.expect("cliff").path, "$.charges[0].model.tiers[1]");
        // And the bill does drop: just at the bound vs. just above it.
        let bill = |q: Decimal| price::volume(&plan_tiers(&plan), q, TierConvention::UpperInclusive).expect("volume").amount;
        let above = bound + Decimal::new(1, 6);
        prop_assert!(bill(above) < bill(bound));
    }
}

fn plan_tiers(plan: &Plan) -> Vec<Tier> {
    match &plan.charges[0].model {
        ratecard_engine::plan::PriceModel::Volume { tiers } => tiers.clone(),
        other => panic!("not a volume model: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Metering laws.

/// A plan with one metric of each order-independent aggregation over events `x`.
fn metering_plan() -> Plan {
    let metrics = json!([
        {"code": "n", "event": "x", "aggregation": {"type": "count"}},
        {"code": "total", "event": "x", "aggregation": {"type": "sum", "property": "v"}},
        {"code": "peak", "event": "x", "aggregation": {"type": "max", "property": "v"}},
        {"code": "low", "event": "x", "aggregation": {"type": "min", "property": "v"}},
        {"code": "regions", "event": "x", "aggregation": {"type": "unique_count", "property": "r"}},
        {"code": "by_region", "event": "x", "aggregation": {"type": "sum", "property": "v"}, "group_by": ["r"]},
    ]);
    let charges: Vec<Value> = ["n", "total", "peak", "low", "regions", "by_region"]
        .iter()
        .map(|code| json!({"id": code, "metric": code, "model": {"type": "per_unit", "unit_price": "0.013"}}))
        .collect();
    serde_json::from_value(
        json!({"id": "metering", "currency": "USD", "metrics": metrics, "charges": charges}),
    )
    .expect("metering plan")
}

fn events() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(
        (0i64..30 * 86_400, (0i64..100_000, 0u32..=2), 0usize..3),
        0..40,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(event_idx, (second, (mantissa, scale), region_idx))| {
                let region = ["eu", "us", "ap"][region_idx];
                json!({
                    "id": format!("e{event_idx}"),
                    "customer": "c",
                    // 2026-11-01T00:00:00Z onwards.
                    "timestamp": 1_793_491_200 + second,
                    "code": "x",
                    "properties": {"v": text(dec(mantissa, scale)), "r": region},
                })
            })
            .collect()
    })
}

fn events_usage(events: &[Value]) -> Usage {
    serde_json::from_value(
        json!({"customer": {"id": "c"}, "period": {"containing": "2026-11-15"}, "events": events}),
    )
    .expect("usage")
}

proptest! {
    #![proptest_config(config(128))]

    /// The order of events does not change the invoice (only the input hash, which covers the
    /// document as written), and counting events gives what the same aggregated quantities give.
    #[test]
    fn event_order_does_not_matter_and_events_match_quantities(
        (events, shuffled) in events().prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle())),
    ) {
        let plan = metering_plan();
        let mut in_order = quote(&plan, &events_usage(&events), &NoPlugins).expect("quote");
        let mut reordered = quote(&plan, &events_usage(&shuffled), &NoPlugins).expect("quote");
        in_order.input_hash.clear();
        reordered.input_hash.clear();
        prop_assert_eq!(serde_json::to_string(&in_order).expect("json"), serde_json::to_string(&reordered).expect("json"));

        let values: Vec<Decimal> = events.iter().map(|e| e["properties"]["v"].as_str().expect("v").parse().expect("decimal")).collect();
        let sum: Decimal = values.iter().sum();
        let aggregated = json!({
            "customer": {"id": "c"},
            "period": {"containing": "2026-11-15"},
            "quantities": {
                "n": values.len().to_string(),
                "total": text(sum),
                "peak": text(values.iter().copied().max().unwrap_or_default()),
                "low": text(values.iter().copied().min().unwrap_or_default()),
            },
        });
        let from_quantities = quote(&plan, &serde_json::from_value(aggregated).expect("usage"), &NoPlugins).expect("quote");
        for code in ["n", "total", "peak", "low"] {
            let line = |invoice: &Invoice| invoice.lines.iter().find(|l| l.charge_id == code).map(|l| (l.quantity.0, l.amount.0));
            prop_assert_eq!(line(&in_order), line(&from_quantities), "charge {}", code);
        }
        let by_region: Decimal = in_order.lines.iter().filter(|l| l.charge_id == "by_region").map(|l| l.quantity.0).sum();
        prop_assert_eq!(by_region, sum, "groups split the sum");
    }
}

// ---------------------------------------------------------------------------------------------
// No panic on arbitrary input.

const KEYS: &[&str] = &[
    "id",
    "name",
    "currency",
    "custom_units",
    "code",
    "scale",
    "interval",
    "unit",
    "count",
    "rounding",
    "level",
    "mode",
    "tier_convention",
    "proration",
    "trial_days",
    "metrics",
    "charges",
    "event",
    "aggregation",
    "type",
    "property",
    "values",
    "per",
    "filters",
    "equals",
    "in",
    "negate",
    "group_by",
    "conversion",
    "multiply_by",
    "divide_by",
    "round",
    "precision",
    "metric",
    "model",
    "amount",
    "timing",
    "prorate",
    "unit_price",
    "tiers",
    "from",
    "up_to",
    "flat_fee",
    "steps",
    "price",
    "package_size",
    "package_price",
    "free_units",
    "percent",
    "fixed_fee",
    "min_per_transaction",
    "max_per_transaction",
    "dimensions",
    "prices",
    "default_unit_price",
    "included",
    "minimum",
    "maximum",
    "minimum_commitment",
    "discounts",
    "duration_periods",
    "taxes",
    "inclusive",
    "credits",
    "customer",
    "timezone",
    "attributes",
    "subscription",
    "start",
    "billing_anchor",
    "period",
    "index",
    "containing",
    "quantities",
    "group",
    "quantity",
    "transactions",
    "events",
    "timestamp",
    "properties",
    "carry_in",
    "plan_change",
    "at",
    "previous_plan",
    "plugin",
    "config",
];

const WORDS: &[&str] = &[
    "USD",
    "JPY",
    "BHD",
    "EUR",
    "credits",
    "month",
    "day",
    "week",
    "quarter",
    "year",
    "line",
    "invoice",
    "half_up",
    "half_even",
    "up",
    "down",
    "upper_inclusive",
    "lower_inclusive",
    "days",
    "seconds",
    "count",
    "sum",
    "max",
    "min",
    "unique_count",
    "latest",
    "time_weighted_sum",
    "time_weighted_average",
    "absolute",
    "increment",
    "hour",
    "minute",
    "second",
    "ceil",
    "floor",
    "flat",
    "per_unit",
    "graduated",
    "volume",
    "stairstep",
    "package",
    "percentage",
    "matrix",
    "advance",
    "arrears",
    "custom",
    "p95@1.0.0",
    "0",
    "1",
    "-1",
    "0.5",
    "12.345",
    "1e3",
    "1e28",
    "-1e-28",
    "0.000000000001",
    "0.0000000000001",
    "79228162514264337593543950335",
    "-79228162514264337593543950335",
    "7922816251426433759354395033.5",
    "NaN",
    "",
    " ",
    "2026-11-01",
    "2026-02-29",
    "2024-02-29",
    "2026-01-31",
    "2026-03-08T02:30:00",
    "2026-11-01T00:00:00Z",
    "2026-11-05T10:00:00+13:00",
    "9999-12-31",
    "0001-01-01",
    "-262144-01-01",
    "UTC",
    "Pacific/Tongatapu",
    "America/New_York",
    "Europe/Paris",
    "Pacific/Kiritimati",
    "Nope/Zone",
    "m",
    "c",
    "api.request",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        2 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "\\PC{0,12}",
        1 => "-?[0-9]{1,30}(\\.[0-9]{1,30})?(e-?[0-9]{1,3})?",
    ]
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(
            &[
                0i64,
                1,
                -1,
                2,
                12,
                100,
                4_294_967_295,
                4_294_967_296,
                i64::MAX,
                i64::MIN
            ][..]
        )
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        arb_string().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// The example plans and usage documents, by name.
fn examples() -> Vec<(String, Value, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root.join("plans"))
        .expect("examples/plans")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for plan_path in entries {
        let name = plan_path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let read = |path: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(path).expect("read"))
                .expect("example json")
        };
        let usage_path = root.join("usage").join(&name);
        let usage = if usage_path.exists() {
            read(&usage_path)
        } else {
            json!({"period": {"index": 0}, "subscription": {"start": "2026-11-01"}})
        };
        out.push((name, read(&plan_path), usage));
    }
    assert!(!out.is_empty(), "no example plans");
    out
}

/// JSON pointers of every node of a tree, the root first.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            out.push(at.clone());
            for (idx, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{idx}"), out);
            }
        }
        Value::Object(map) => {
            out.push(at.clone());
            for (key, item) in map {
                pointers(
                    item,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => out.push(at),
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace a scalar with one of the same kind (a string with another word or decimal text,
    /// a number with another number, a bool with its negation): the document usually still
    /// parses, so the hostile value reaches validation and rating.
    Tweak(String, Value),
    /// Replace the node with a value.
    Replace(Value),
    /// Remove the node from its parent.
    Remove,
    /// Insert or overwrite a key of an object node (an array node gets the value pushed).
    Insert(&'static str, Value),
    /// Repeat an array node's element (or wrap a scalar in an array).
    Duplicate,
}

fn mutation() -> impl Strategy<Value = (bool, Index, Mutation)> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        prop::sample::select(
            &[
                0i64,
                1,
                -1,
                2,
                31,
                4_294_967_295,
                4_294_967_296,
                i64::MAX,
                i64::MIN
            ][..]
        )
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ];
    let mutation = prop_oneof![
        8 => (arb_string(), number).prop_map(|(s, n)| Mutation::Tweak(s, n)),
        2 => arb_scalar().prop_map(Mutation::Replace),
        1 => arb_json().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        2 => (prop::sample::select(KEYS), arb_json()).prop_map(|(k, v)| Mutation::Insert(k, v)),
        1 => Just(Mutation::Duplicate),
    ];
    (any::<bool>(), any::<Index>(), mutation)
}

fn apply(root: &mut Value, at: &Index, mutation: &Mutation) {
    let mut all = Vec::new();
    pointers(root, String::new(), &mut all);
    let pointer = at.get(&all).clone();
    match mutation {
        Mutation::Tweak(text, number) => {
            if let Some(node) = root.pointer_mut(&pointer) {
                match node {
                    Value::String(_) => *node = Value::String(text.clone()),
                    Value::Number(_) => *node = number.clone(),
                    Value::Bool(flag) => *flag = !*flag,
                    _ => {}
                }
            }
        }
        Mutation::Replace(value) => {
            if let Some(node) = root.pointer_mut(&pointer) {
                *node = value.clone();
            }
        }
        Mutation::Remove => {
            let Some((parent, last)) = pointer.rsplit_once('/') else {
                return;
            };
            let key = last.replace("~1", "/").replace("~0", "~");
            match root.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&key);
                }
                Some(Value::Array(items)) => {
                    if let Ok(idx) = key.parse::<usize>()
                        && idx < items.len()
                    {
                        items.remove(idx);
                    }
                }
                _ => {}
            }
        }
        Mutation::Insert(key, value) => match root.pointer_mut(&pointer) {
            Some(Value::Object(map)) => {
                map.insert((*key).to_owned(), value.clone());
            }
            Some(Value::Array(items)) => items.push(value.clone()),
            _ => {}
        },
        Mutation::Duplicate => {
            if let Some(node) = root.pointer_mut(&pointer) {
                match node {
                    Value::Array(items) if !items.is_empty() => {
                        let first = items[0].clone();
                        items.push(first);
                    }
                    other => *other = Value::Array(vec![other.clone(), other.clone()]),
                }
            }
        }
    }
}

/// Parses, validates and quotes; any result is fine, a panic fails the property.
fn exercise(plan: &Value, usage: &Value) {
    let plan = serde_json::from_value::<Plan>(plan.clone());
    let usage = serde_json::from_value::<Usage>(usage.clone());
    if let Ok(plan) = &plan {
        let _ = validate_plan(plan);
        let _ = serde_json::to_vec(plan);
    }
    if let (Ok(plan), Ok(usage)) = (plan, usage)
        && let Ok(invoice) = quote(&plan, &usage, &NoPlugins)
    {
        let _bytes = serde_json::to_vec(&invoice).expect("an invoice always serializes");
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary JSON values, as a plan, as a usage, and spliced into an example.
    #[test]
    fn no_panic_on_arbitrary_json(value in arb_json(), other in arb_json(), example_idx in any::<Index>()) {
        exercise(&value, &other);
        let examples = examples();
        let (_, plan, usage) = example_idx.get(&examples);
        exercise(plan, &value);
        exercise(&value, usage);
    }

    /// Random mutations of the example plans and usage documents: most of them still parse, so
    /// this reaches validation and rating with hostile values.
    #[test]
    fn no_panic_on_mutated_examples(example_idx in any::<Index>(), mutations in prop::collection::vec(mutation(), 1..5)) {
        let examples = examples();
        let (_, plan, usage) = example_idx.get(&examples);
        let (mut plan, mut usage) = (plan.clone(), usage.clone());
        for (on_plan, at, mutation) in &mutations {
            apply(if *on_plan { &mut plan } else { &mut usage }, at, mutation);
        }
        exercise(&plan, &usage);
    }
}

/// The examples themselves rate (the mutation property starts from working documents).
#[test]
fn examples_rate() {
    for (name, plan, usage) in examples() {
        let plan: Plan =
            serde_json::from_value(plan).unwrap_or_else(|e| panic!("{name}: plan: {e}"));
        let usage: Usage =
            serde_json::from_value(usage).unwrap_or_else(|e| panic!("{name}: usage: {e}"));
        if let Err(error) = quote(&plan, &usage, &NoPlugins) {
            panic!("{name}: {error}");
        }
    }
}
