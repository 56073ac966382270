//! The engine's live view of a period: snapshots and the projected bill.

use ratecard_engine::json;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::PreparedPlan;
use ratecard_engine::rater::PeriodRater;
use ratecard_engine::usage::Usage;
use rust_decimal::Decimal;

fn plan() -> Plan {
    json::parse(
        r#"{"id": "p", "currency": "USD", "interval": "month",
            "metrics": [
              {"code": "calls", "event": "call", "aggregation": {"type": "count"}},
              {"code": "gb", "event": "store", "aggregation": {"type": "sum", "property": "gb"}},
              {"code": "peak", "event": "store", "aggregation": {"type": "max", "property": "gb"}}],
            "charges": [
              {"id": "calls", "metric": "calls", "model": {"type": "graduated", "tiers": [
                 {"up_to": "10", "unit_price": "0"}, {"up_to": null, "unit_price": "1.00"}]}},
              {"id": "gb", "metric": "gb", "model": {"type": "per_unit", "unit_price": "0.10"}},
              {"id": "peak", "metric": "peak", "model": {"type": "per_unit", "unit_price": "2.00"}}]}"#,
    )
    .expect("plan parses")
}

#[test]
fn projection_scales_additive_metrics_and_prices_them_through_the_tiers() {
    let plan = plan();
    let prepared = PreparedPlan::of(&plan).expect("valid plan");
    let mut events = Vec::new();
    for i in 0..8 {
        events.push(format!(
            r#"{{"id": "c{i}", "timestamp": "2026-11-0{}T00:00:00Z", "code": "call"}}"#,
            i + 1
        ));
    }
    events.push(r#"{"id": "s1", "timestamp": "2026-11-02T00:00:00Z", "code": "store", "properties": {"gb": "3.5"}}"#.to_owned());
    let usage: Usage = json::parse(&format!(
        r#"{{"customer": {{"id": "a"}}, "subscription": {{"start": "2026-11-01"}},
             "period": {{"index": 0}}, "events": [{}]}}"#,
        events.join(",")
    ))
    .expect("usage parses");
    let mut rater = PeriodRater::open(&prepared, &usage, &NoPlugins).expect("opens");
    for (k, event) in usage.events.iter().enumerate() {
        let _outcome = rater.push(event, format_args!("$.events[{k}]"));
    }
    // So far: 8 calls inside the free tier, 3.5 GB × 0.10, peak 3.5 × 2.00 = 0 + 0.35 + 7.00.
    let now = rater.snapshot().expect("no plugins").expect("prices");
    assert_eq!(now.total.0, Decimal::new(735, 2));
    // A quarter of the period gone (scale 4): 32 calls = 22 paid (22.00), 14 GB (1.40), the
    // peak unchanged (7.00).
    let projected = rater
        .projected(Decimal::from(4))
        .expect("no plugins")
        .expect("prices");
    assert_eq!(projected.total.0, Decimal::new(3040, 2), "{projected:#?}");
    // The rater goes on: its invoice is still the events pushed.
    let finished = rater.finish().expect("prices");
    assert_eq!(finished.total.0, Decimal::new(735, 2));
}
