//! The bodies of Ratecard's fuzz targets, as plain functions.
//!
//! `fuzz_targets/*.rs` call them under libFuzzer (`cargo +nightly fuzz run <target>`); the seed
//! corpus test (`tests/corpus.rs` here, and `crates/engine/tests/fuzz_corpus.rs`, which includes
//! this file with `#[path]`) calls them on stable over `corpus/<target>/`. Each returns how far
//! the input got, so the corpus test can check the seeds reach the deep code; any input may
//! return anything, and only a panic (or a hang) is a finding.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use ratecard_engine::meter::Outcome;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::{self, PreparedPlan};
use ratecard_engine::rater::{Opened, PeriodRater};
use ratecard_engine::usage::{CustomerSetup, Event, PeriodSelector, Usage};
use ratecard_engine::validate::validate_plan;

/// How far an input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// Not a plan / no line parsed as an event.
    NotParsed,
    /// A plan with validation errors / events that were all refused or skipped.
    Refused,
    /// A quote failed (period, overflow, a plugin) / events counted but pricing failed.
    RateFailed,
    /// A quote (invoice) was produced.
    Quoted,
}

/// `parse_plan`: bytes → `serde_json::from_slice::<Plan>` → `validate_plan` → if valid, a quote
/// for period index 0 with an empty usage, serialized.
pub fn parse_plan(data: &[u8]) -> Reached {
    let Ok(plan) = serde_json::from_slice::<Plan>(data) else {
        return Reached::NotParsed;
    };
    let report = validate_plan(&plan);
    // Reports and plans serialize whatever they hold.
    let _report_json = serde_json::to_vec(&report).expect("a report serializes");
    let _plan_json = serde_json::to_vec(&plan).expect("a plan serializes");
    if !report.is_ok() {
        return Reached::Refused;
    }
    let usage = Usage {
        period: Some(PeriodSelector::Index { index: 0 }),
        ..empty_usage()
    };
    match rate::quote(&plan, &usage, &NoPlugins) {
        Ok(invoice) => {
            let _invoice_json = serde_json::to_vec(&invoice).expect("an invoice serializes");
            Reached::Quoted
        }
        Err(_) => Reached::RateFailed,
    }
}

fn empty_usage() -> Usage {
    serde_json::from_str("{}").expect("the empty usage parses")
}

/// The plan events are aggregated with: one metric per aggregation kind, with filters, groups,
/// conversions and per-transaction recording, all reading the same few properties.
const EVENT_PLAN: &str = r#"{
  "id": "fuzz-events",
  "currency": "USD",
  "metrics": [
    {"code": "calls", "event": "api.request", "aggregation": {"type": "count"}},
    {"code": "eu_calls", "event": "api.request", "aggregation": {"type": "count"},
     "filters": [{"property": "region", "in": ["eu", "eu-west"]}, {"property": "debug", "equals": "true", "negate": true}]},
    {"code": "bytes", "event": "api.request", "aggregation": {"type": "sum", "property": "bytes"},
     "group_by": ["region"], "conversion": {"divide_by": "1000000", "round": {"mode": "ceil", "precision": 3}}},
    {"code": "peak", "event": "api.request", "aggregation": {"type": "max", "property": "bytes"}},
    {"code": "low", "event": "api.request", "aggregation": {"type": "min", "property": "bytes"}},
    {"code": "users", "event": "login", "aggregation": {"type": "unique_count", "property": "user"}},
    {"code": "last", "event": "gauge", "aggregation": {"type": "latest", "property": "value"}},
    {"code": "gb_hours", "event": "gauge", "aggregation": {"type": "time_weighted_sum", "property": "value", "per": "hour"}},
    {"code": "seats", "event": "seat", "aggregation": {"type": "time_weighted_average", "property": "delta", "values": "increment"},
     "group_by": ["team"]},
    {"code": "amounts", "event": "payment", "aggregation": {"type": "sum", "property": "amount"}}
  ],
  "charges": [
    {"id": "calls", "metric": "calls", "included": "10", "model": {"type": "graduated", "tiers": [
      {"up_to": "100", "unit_price": "0.01", "flat_fee": "1.00"}, {"up_to": null, "unit_price": "0.005"}]}},
    {"id": "eu", "metric": "eu_calls", "model": {"type": "volume", "tiers": [
      {"up_to": "10", "unit_price": "0.02"}, {"up_to": null, "unit_price": "0.01"}]}},
    {"id": "bytes", "metric": "bytes", "model": {"type": "per_unit", "unit_price": "0.09"}, "maximum": "500.00"},
    {"id": "peak", "metric": "peak", "model": {"type": "stairstep", "steps": [
      {"up_to": "1000", "price": "5.00"}, {"up_to": null, "price": "20.00"}]}},
    {"id": "low", "metric": "low", "model": {"type": "package", "package_size": "100", "package_price": "1.00", "free_units": "50"}},
    {"id": "users", "metric": "users", "model": {"type": "per_unit", "unit_price": "3.00"}, "minimum": "10.00"},
    {"id": "last", "metric": "last", "model": {"type": "per_unit", "unit_price": "0.000001"}},
    {"id": "gb_hours", "metric": "gb_hours", "model": {"type": "per_unit", "unit_price": "0.0001"}},
    {"id": "seats", "metric": "seats", "model": {"type": "per_unit", "unit_price": "12.00"}},
    {"id": "fees", "metric": "amounts", "model": {"type": "percentage", "percent": "2.9", "fixed_fee": "0.30",
      "min_per_transaction": "0.50", "max_per_transaction": "10.00"}}
  ],
  "minimum_commitment": "25.00",
  "discounts": [{"id": "d", "percent": "10"}],
  "taxes": [{"id": "vat", "percent": "20"}],
  "credits": [{"id": "k", "amount": "5.00"}]
}"#;

/// The period every event is aggregated in: November 2026, UTC.
const EVENT_PERIOD: &str = "2026-11-15";

fn event_plan() -> &'static PreparedPlan<'static> {
    static PLAN: OnceLock<PreparedPlan<'static>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let plan: Plan = serde_json::from_str(EVENT_PLAN).expect("the event plan parses");
        PreparedPlan::new(plan).expect("the event plan is valid")
    })
}

/// `parse_event`: bytes → NDJSON lines → `serde_json::from_str::<Event>` (and the same through
/// `Event::from_json_line`'s scanner, which must agree) → a customer's `PeriodRater`,
/// then `finish` (pricing), as `ratecard rate` does for one customer.
pub fn parse_event(data: &[u8]) -> Reached {
    let prepared = event_plan();
    let opened = PeriodRater::open_containing(
        prepared,
        "",
        &CustomerSetup::default(),
        EVENT_PERIOD,
        None,
        &NoPlugins,
    );
    let Ok(Opened::Rating(mut rater)) = opened else {
        panic!("the event period opens: {opened:?}");
    };
    let mut n_parsed = 0u64;
    let mut n_counted = 0u64;
    for (line_idx, line) in data.split(|b| *b == b'\n').enumerate() {
        // `ratecard rate` reads lines as UTF-8 text and reports the others.
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        // `ratecard rate`'s scanner must read every line exactly as serde_json does.
        let by_serde = serde_json::from_str::<Event<'_>>(text);
        let scanned = Event::from_json_line(text.as_bytes());
        assert_eq!(
            format!("{scanned:?}"),
            format!("{by_serde:?}"),
            "the event scanner and serde_json disagree on {text:?}"
        );
        let Ok(event) = by_serde else {
            continue;
        };
        n_parsed += 1;
        if let Ok(Outcome::Counted) = rater.push(&event, format_args!("line {}", line_idx + 1)) {
            n_counted += 1;
        }
        // An event round-trips through its own serialization.
        let _event_json = serde_json::to_vec(&event).expect("an event serializes");
    }
    if n_parsed == 0 {
        return Reached::NotParsed;
    }
    if n_counted == 0 {
        return Reached::Refused;
    }
    match rater.finish() {
        Ok(invoice) => {
            let _invoice_json = serde_json::to_vec(&invoice).expect("an invoice serializes");
            Reached::Quoted
        }
        Err(_) => Reached::RateFailed,
    }
}

/// A fuzz target's body.
pub type Target = fn(&[u8]) -> Reached;

/// Every target, by the name of its `fuzz_targets/` file and corpus directory.
pub const TARGETS: [(&str, Target); 2] = [("parse_plan", parse_plan), ("parse_event", parse_event)];

/// Runs both targets over every seed in `corpus_root/<target>/` (sorted), and over
/// deterministic variants of each seed (truncations, byte replacements), so the target logic is
/// exercised on a stable toolchain. Returns each seed's file name and how far it got.
pub fn run_corpus(corpus_root: &std::path::Path) -> Vec<(String, String, Reached)> {
    let mut results = Vec::new();
    for (target, run) in TARGETS {
        let dir = corpus_root.join(target);
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let seed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            results.push((target.to_owned(), name, run(&seed)));
            for variant in variants(&seed) {
                run(&variant);
            }
        }
    }
    results
}

/// Cheap deterministic mutations of a seed: 32 truncations and 64 single-byte replacements.
fn variants(seed: &[u8]) -> Vec<Vec<u8>> {
    const REPLACEMENTS: [u8; 8] = [b'"', b'-', b'0', b'9', b'{', b']', b'e', 0xff];
    let mut out = Vec::new();
    if seed.is_empty() {
        return out;
    }
    let step = seed.len().div_ceil(32);
    out.extend(
        (0..seed.len())
            .step_by(step)
            .map(|end| seed[..end].to_vec()),
    );
    let step = seed.len().div_ceil(64);
    for (n, at) in (0..seed.len()).step_by(step).enumerate() {
        let mut variant = seed.to_vec();
        variant[at] = REPLACEMENTS[n % REPLACEMENTS.len()];
        out.push(variant);
    }
    out
}
