//! A quote of a 10-charge plan with 5 graduated tiers each, from aggregated quantities, against a
//! hand-written loop computing the same 10 × 5-tier graduated sums with `rust_decimal` directly
//! (the in-process baseline: the ratio is the engine's overhead over the raw arithmetic).
//!
//! Run: `cargo bench -p ratecard-engine --bench quote` (release). `RATECARD_BENCH_SAMPLES`
//! (default 41) samples are taken of each measurement; the median per-call time is reported.
//! Both sides are measured in the same run, interleaved sample by sample.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::money::RoundingMode;
use ratecard_engine::plan::{Plan, PriceModel};
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::{PreparedPlan, input_hash, quote};
use ratecard_engine::usage::Usage;
use ratecard_engine::validate::validate_plan;
use rust_decimal::RoundingStrategy;
use serde_json::json;

const N_CHARGES: usize = 10;
const N_TIERS: usize = 5;

/// The plan: 10 metrics, each priced by a 5-tier graduated charge with sub-cent prices.
fn plan() -> Plan {
    let metrics: Vec<_> = (0..N_CHARGES)
        .map(|i| json!({"code": format!("m{i}"), "aggregation": {"type": "count"}}))
        .collect();
    let charges: Vec<_> = (0..N_CHARGES)
        .map(|i| {
            let tiers: Vec<_> = (0..N_TIERS)
                .map(|t| {
                    let up_to = (t + 1 < N_TIERS).then(|| (1000 * 10usize.pow(t as u32) * (i + 1)).to_string());
                    let unit_price = Decimal::new(50_000 - 9_000 * t as i64 + i as i64, 6);
                    json!({"up_to": up_to, "unit_price": unit_price.to_string()})
                })
                .collect();
            json!({"id": format!("c{i}"), "metric": format!("m{i}"), "model": {"type": "graduated", "tiers": tiers}})
        })
        .collect();
    serde_json::from_value(json!({
        "id": "bench-10x5", "currency": "USD", "interval": "month",
        "rounding": {"level": "line", "mode": "half_up"},
        "metrics": metrics, "charges": charges,
    }))
    .expect("bench plan")
}

/// Aggregated quantities that reach every tier of most charges (fractional on some).
fn usage() -> Usage {
    let quantities: serde_json::Map<_, _> = (0..N_CHARGES)
        .map(|i| {
            (
                format!("m{i}"),
                json!(format!("{}.{}", 3_700_000 * (i + 1) + 123, i)),
            )
        })
        .collect();
    serde_json::from_value(json!({
        "customer": {"id": "acme", "timezone": "Europe/Paris"},
        "subscription": {"start": "2026-11-01"},
        "period": {"index": 0},
        "quantities": quantities,
    }))
    .expect("bench usage")
}

/// The baseline's input: per charge, `(up_to, unit_price)` of each tier, and the quantity.
type Schedule = Vec<(Vec<(Option<Decimal>, Decimal)>, Decimal)>;

fn schedule(plan: &Plan, usage: &Usage) -> Schedule {
    plan.charges
        .iter()
        .map(|charge| {
            let PriceModel::Graduated { tiers } = &charge.model else {
                unreachable!("graduated only")
            };
            let metric = charge.metric.as_deref().expect("metric");
            let quantity = match &usage.quantities[metric] {
                ratecard_engine::usage::QuantityInput::Total(q) => q.0,
                ratecard_engine::usage::QuantityInput::Groups(_) => unreachable!("totals only"),
            };
            (
                tiers
                    .iter()
                    .map(|t| (t.up_to.map(|d| d.0), t.unit_price.0))
                    .collect(),
                quantity,
            )
        })
        .collect()
}

/// The raw arithmetic: graduated sums, each line rounded half-up to cents, summed.
fn baseline(schedule: &Schedule) -> Decimal {
    let mut subtotal = Decimal::ZERO;
    for (tiers, quantity) in schedule {
        let mut line = Decimal::ZERO;
        let mut lower = Decimal::ZERO;
        for (up_to, unit_price) in tiers {
            if *quantity <= lower {
                break;
            }
            let upper = up_to.map_or(*quantity, |u| u.min(*quantity));
            line += (upper - lower) * unit_price;
            lower = up_to.unwrap_or(*quantity);
        }
        subtotal += line.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    }
    subtotal
}

/// Median per-call time over `samples` samples of `batch` calls each.
fn per_call(samples: &mut Vec<Duration>, batch: u32, mut f: impl FnMut()) {
    let started = Instant::now();
    for _ in 0..batch {
        f();
    }
    samples.push(started.elapsed() / batch);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let plan = plan();
    let usage = usage();
    let report = validate_plan(&plan);
    assert!(report.is_ok(), "bench plan invalid: {:?}", report.errors);
    let schedule = schedule(&plan, &usage);

    // Same numbers on both sides.
    let invoice = quote(&plan, &usage, &NoPlugins).expect("quote");
    assert_eq!(
        invoice.subtotal.0,
        baseline(&schedule),
        "engine and baseline disagree"
    );
    assert_eq!(invoice.lines.len(), N_CHARGES);
    for line in &invoice.lines {
        assert!(
            line.breakdown.len() >= N_TIERS,
            "line {} does not reach every tier",
            line.charge_id
        );
    }
    assert_eq!(
        RoundingMode::HalfUp.round(invoice.subtotal.0, 2),
        invoice.subtotal.0
    );

    let n_samples: usize = std::env::var("RATECARD_BENCH_SAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(41)
        .max(1);
    let (quote_batch, baseline_batch) = (200, 20_000);
    let prepared = PreparedPlan::of(&plan).expect("valid");
    assert_eq!(
        serde_json::to_string(&prepared.quote(&usage, &NoPlugins).expect("quote")).unwrap(),
        serde_json::to_string(&invoice).unwrap(),
        "a prepared plan quotes the same invoice"
    );
    let quantities: std::collections::BTreeMap<String, Decimal> = schedule
        .iter()
        .enumerate()
        .map(|(i, (_, quantity))| (format!("m{i}"), *quantity))
        .collect();
    assert_eq!(
        prepared.total(&quantities, &NoPlugins).expect("total"),
        invoice.total.0,
        "a prepared plan's total is the quote's"
    );
    let (mut quote_t, mut baseline_t, mut validate_t, mut hash_t, mut json_t, mut prepared_t) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut total_t = vec![];
    // Warm-up.
    for _ in 0..200 {
        black_box(quote(black_box(&plan), black_box(&usage), &NoPlugins).expect("quote"));
        black_box(baseline(black_box(&schedule)));
    }
    for _ in 0..n_samples {
        per_call(&mut quote_t, quote_batch, || {
            black_box(quote(black_box(&plan), black_box(&usage), &NoPlugins).expect("quote"));
        });
        per_call(&mut baseline_t, baseline_batch, || {
            black_box(baseline(black_box(&schedule)));
        });
        per_call(&mut prepared_t, quote_batch, || {
            black_box(
                black_box(&prepared)
                    .quote(black_box(&usage), &NoPlugins)
                    .expect("quote"),
            );
        });
        per_call(&mut total_t, baseline_batch / 4, || {
            black_box(
                black_box(&prepared)
                    .total(black_box(&quantities), &NoPlugins)
                    .expect("total"),
            );
        });
        per_call(&mut validate_t, quote_batch, || {
            black_box(validate_plan(black_box(&plan)));
        });
        per_call(&mut hash_t, quote_batch, || {
            black_box(input_hash(black_box(&plan), black_box(&usage)));
        });
        per_call(&mut json_t, quote_batch, || {
            black_box(serde_json::to_vec(black_box(&invoice)).expect("json"));
        });
    }
    let (quote_m, baseline_m) = (median(quote_t), median(baseline_t));
    println!(
        "quote bench: {N_CHARGES} charges × {N_TIERS} graduated tiers, aggregated quantities, median of {n_samples} samples"
    );
    println!(
        "  engine quote (validate + period + price + round + hash): {:>9.2} µs/quote",
        micros(quote_m)
    );
    println!(
        "  hand-written rust_decimal loop (same sums):              {:>9.3} µs/quote",
        micros(baseline_m)
    );
    println!(
        "  ratio engine/baseline: {:.1}× (the tier arithmetic itself is {:.1} % of a quote)",
        quote_m.as_secs_f64() / baseline_m.as_secs_f64(),
        100.0 * baseline_m.as_secs_f64() / quote_m.as_secs_f64()
    );
    let prepared_m = median(prepared_t);
    println!(
        "  prepared plan (validated and plan hashed once), per quote: {:>9.2} µs/quote: quote/prepared {:.2}×, prepared/baseline {:.1}×",
        micros(prepared_m),
        quote_m.as_secs_f64() / prepared_m.as_secs_f64(),
        prepared_m.as_secs_f64() / baseline_m.as_secs_f64()
    );
    let total_m = median(total_t);
    println!(
        "  prepared plan's total (amounts only, no invoice): {:>9.2} µs/total, total/baseline {:.1}×",
        micros(total_m),
        total_m.as_secs_f64() / baseline_m.as_secs_f64()
    );
    println!(
        "  inside a quote: validate_plan {:.2} µs, input_hash (JSON + SHA-256) {:.2} µs; serializing the invoice to JSON: {:.2} µs",
        micros(median(validate_t)),
        micros(median(hash_t)),
        micros(median(json_t)),
    );
}
