//! The aggregator's tests: one `check(case, events, expected)` helper over JSON cases.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use std::borrow::Cow;
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::*;
use crate::plan::{Charge, Metric};
use crate::plugin::{MetricAccumulator, PluginHost, PriceRequest, PricedLine};
use crate::usage::{Event, PropValue, Timestamp};

const DAY: i64 = 86_400_000;

/// A case: the metrics and what the aggregator is given, as JSON.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    metrics: Vec<Metric>,
    #[serde(default)]
    charges: Vec<Charge>,
    #[serde(default)]
    carry_in: BTreeMap<String, String>,
    #[serde(default)]
    billable_from_day: i64,
    #[serde(default = "thirty")]
    window_days: i64,
}

fn thirty() -> i64 {
    30
}

/// Runs `case` over `events` (one per line: `id @time code key=value ...`, time as `15d`,
/// `5h` or `123ms`; values `true`, `false`, `null`, `{}`, `"text"`, a decimal or bare text)
/// and compares the outcomes and the usage with `expected`, line by line, ignoring
/// indentation.
fn check(case: &str, events: &str, expected: &str) {
    let plugins = TestPlugins::default();
    let actual = run(case, events, &plugins);
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let actual: Vec<&str> = actual.lines().collect();
    assert_eq!(actual, expected, "\nactual:\n{}\n", actual.join("\n"));
}

fn run(case: &str, events: &str, plugins: &dyn PluginHost) -> String {
    let case: Case = serde_json::from_str(case).expect("case JSON");
    let carry_in = case
        .carry_in
        .iter()
        .map(|(code, level)| (code.clone(), level.parse::<Decimal>().expect("carry-in")))
        .collect();
    let window = Window {
        start: Timestamp(0),
        end: Timestamp(case.window_days * DAY),
    };
    let billable_from = Timestamp(case.billable_from_day * DAY);
    let mut out = String::new();
    let mut aggregator = match Aggregator::new(
        &case.metrics,
        &case.charges,
        window,
        billable_from,
        &carry_in,
        plugins,
    ) {
        Ok(aggregator) => aggregator,
        Err(error) => return format!("new: {error}"),
    };
    for event in parse_events(events) {
        match aggregator.push(&event) {
            Ok(outcome) => writeln!(out, "{} {outcome:?}", event.id),
            Err(error) => writeln!(out, "{} error: {error}", event.id),
        }
        .unwrap();
    }
    writeln!(out, "counted: {}", aggregator.n_counted()).unwrap();
    match aggregator.finish() {
        Ok(usage) => out.push_str(&render(&usage)),
        Err(error) => writeln!(out, "finish: {error}").unwrap(),
    }
    out
}

fn render(usage: &MeteredUsage) -> String {
    let mut out = String::new();
    for (code, groups) in &usage.metrics {
        if groups.is_empty() {
            writeln!(out, "{code}: no groups").unwrap();
        }
        for group in groups {
            let key: Vec<String> = group
                .group
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(
                out,
                "{code} {{{}}} raw={} qty={} n={}",
                key.join(","),
                group.raw_value,
                group.quantity,
                group.n_events
            )
            .unwrap();
            if let Some(transactions) = &group.transactions {
                let amounts: Vec<String> = transactions.iter().map(|t| t.to_string()).collect();
                write!(out, " tx=[{}]", amounts.join(",")).unwrap();
            }
            if let Some(values) = &group.values {
                write!(
                    out,
                    " carried=[{}] active=[{}]",
                    values.carried_in.join(","),
                    values.active.join(",")
                )
                .unwrap();
            }
            out.push('\n');
        }
    }
    out
}

fn parse_events(text: &str) -> Vec<Event<'static>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut tokens = line.split_whitespace();
            let id = tokens.next().expect("id").to_owned();
            let at = tokens
                .next()
                .and_then(|t| t.strip_prefix('@'))
                .expect("@time");
            let code = tokens.next().expect("code").to_owned();
            let properties = tokens
                .map(|token| {
                    let (key, value) = token.split_once('=').expect("key=value");
                    (Cow::Owned(key.to_owned()), parse_value(value))
                })
                .collect();
            Event {
                id: Cow::Owned(id),
                customer: Cow::Borrowed("c1"),
                timestamp: Timestamp(parse_time(at)),
                code: Cow::Owned(code),
                properties,
            }
        })
        .collect()
}

fn parse_time(text: &str) -> i64 {
    let (number, unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('d') {
        (n, DAY)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        panic!("time `{text}` needs a unit")
    };
    number.parse::<i64>().expect("time") * unit
}

fn parse_value(text: &str) -> PropValue<'static> {
    match text {
        "true" => PropValue::Bool(true),
        "false" => PropValue::Bool(false),
        "null" => PropValue::Null,
        "{}" => PropValue::Other,
        _ => match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(quoted) => PropValue::Str(Cow::Owned(quoted.to_owned())),
            None => match crate::decimal::parse_decimal(text) {
                Ok(number) => PropValue::Num(Ok(number)),
                Err(_) => PropValue::Str(Cow::Owned(text.to_owned())),
            },
        },
    }
}

/// Plugins for tests: `sum@1` sums the property named by its config's `property` (state:
/// the total as a decimal string), `fail@1` fails on its first batch, `picky@1` rejects
/// every config.
#[derive(Default)]
struct TestPlugins {
    n_updates: Arc<AtomicUsize>,
}

struct SumAccumulator {
    property: String,
    total: Decimal,
    n_updates: Arc<AtomicUsize>,
}

impl MetricAccumulator for SumAccumulator {
    fn update(&mut self, events: &[Event<'_>]) -> Result<(), PluginError> {
        self.n_updates.fetch_add(1, Ordering::Relaxed);
        for event in events {
            let value = event
                .properties
                .get(self.property.as_str())
                .map_or(Ok(Decimal::ZERO), PropValue::as_decimal)
                .map_err(|message| PluginError::Failed {
                    plugin: "sum@1".into(),
                    message,
                })?;
            self.total += value;
        }
        Ok(())
    }

    fn save(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(self.total.to_string().into_bytes())
    }

    fn merge(&mut self, other_state: &[u8]) -> Result<(), PluginError> {
        let invalid = |message: String| PluginError::InvalidOutput {
            plugin: "sum@1".into(),
            message,
        };
        let text = std::str::from_utf8(other_state).map_err(|e| invalid(e.to_string()))?;
        self.total += crate::decimal::parse_decimal(text).map_err(invalid)?;
        Ok(())
    }

    fn finish(&mut self) -> Result<Decimal, PluginError> {
        Ok(self.total)
    }
}

struct FailingAccumulator;

impl MetricAccumulator for FailingAccumulator {
    fn update(&mut self, _events: &[Event<'_>]) -> Result<(), PluginError> {
        Err(PluginError::Failed {
            plugin: "fail@1".into(),
            message: "boom".into(),
        })
    }

    fn save(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(Vec::new())
    }

    fn merge(&mut self, _other_state: &[u8]) -> Result<(), PluginError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<Decimal, PluginError> {
        Ok(Decimal::ZERO)
    }
}

impl PluginHost for TestPlugins {
    fn metric(
        &self,
        plugin: &str,
        config: &serde_json::Value,
    ) -> Result<Box<dyn MetricAccumulator>, PluginError> {
        match plugin {
            "sum@1" => Ok(Box::new(SumAccumulator {
                property: config["property"].as_str().unwrap_or("value").to_owned(),
                total: Decimal::ZERO,
                n_updates: Arc::clone(&self.n_updates),
            })),
            "fail@1" => Ok(Box::new(FailingAccumulator)),
            "picky@1" => Err(PluginError::InvalidConfig {
                plugin: plugin.into(),
                message: "no config is good enough".into(),
            }),
            _ => Err(PluginError::NotFound(plugin.to_owned())),
        }
    }

    fn price(&self, plugin: &str, _request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        Err(PluginError::NotFound(plugin.to_owned()))
    }
}

/// A unique count that follows `add` / `remove` operations counts the values whose latest
/// event (by timestamp, not push order) adds them; a missing or null operation adds; another
/// operation refuses the event.
#[test]
fn unique_count_follows_operations_by_timestamp() {
    check(
        r#"{"metrics": [{"code": "seats", "aggregation":
            {"type": "unique_count", "property": "seat", "operation_property": "op"}}]}"#,
        r#"
        e1 @2d seats seat=a op="remove"
        e2 @1d seats seat=a op="add"
        e3 @1d seats seat=b
        e4 @2d seats seat=b op="add"
        e5 @1d seats seat=c op="remove"
        e6 @3d seats seat=d op=null
        e7 @3d seats seat=e op="delete"
        "#,
        r#"
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        e5 Counted
        e6 Counted
        e7 error: event `e7`: metric `seats`: property `op`: an operation is `add` or `remove`
        counted: 6
        seats {} raw=2 qty=2 n=6 carried=[] active=[b,d]
        "#,
    );
}

const ALL_BUILT_INS: &str = r#"{"metrics": [
    {"code": "calls", "event": "api", "aggregation": {"type": "count"}},
    {"code": "bytes", "event": "api", "aggregation": {"type": "sum", "property": "bytes"}},
    {"code": "peak", "event": "api", "aggregation": {"type": "max", "property": "bytes"}},
    {"code": "low", "event": "api", "aggregation": {"type": "min", "property": "bytes"}},
    {"code": "last", "event": "api", "aggregation": {"type": "latest", "property": "bytes"}},
    {"code": "users", "event": "api", "aggregation": {"type": "unique_count", "property": "user"}},
    {"code": "by_region", "event": "api", "group_by": ["region"],
     "aggregation": {"type": "count"}}
]}"#;

#[test]
fn each_built_in_aggregation() {
    check(
        ALL_BUILT_INS,
        r#"
        e1 @1d api bytes=10 user=a
        e2 @3d api bytes=5 user=b
        e3 @2d api bytes=7.5 user=a
        e4 @3d api bytes=6 user=null
        e5 @1h api bytes="-1" user=1.50
        e6 @4h api bytes=0 user=1.5
        "#,
        "
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        e5 Counted
        e6 Counted
        counted: 6
        by_region {region=(none)} raw=6 qty=6 n=6
        bytes {} raw=27.5 qty=27.5 n=6
        calls {} raw=6 qty=6 n=6
        last {} raw=6 qty=6 n=6
        low {} raw=-1 qty=-1 n=6
        peak {} raw=10 qty=10 n=6
        users {} raw=3 qty=3 n=6
        ",
    );
}

#[test]
fn no_events_give_zero_for_ungrouped_and_no_group_for_grouped() {
    check(
        ALL_BUILT_INS,
        "",
        "
        counted: 0
        by_region: no groups
        bytes {} raw=0 qty=0 n=0
        calls {} raw=0 qty=0 n=0
        last {} raw=0 qty=0 n=0
        low {} raw=0 qty=0 n=0
        peak {} raw=0 qty=0 n=0
        users {} raw=0 qty=0 n=0
        ",
    );
}

#[test]
fn filters_equals_in_negate() {
    check(
        r#"{"metrics": [
            {"code": "eu", "event": "api", "aggregation": {"type": "count"},
             "filters": [{"property": "region", "equals": "eu"}]},
            {"code": "eu_us", "event": "api", "aggregation": {"type": "count"},
             "filters": [{"property": "region", "in": ["eu", "us"]}]},
            {"code": "not_eu", "event": "api", "aggregation": {"type": "count"},
             "filters": [{"property": "region", "equals": "eu", "negate": true}]},
            {"code": "eu_gold", "event": "api", "aggregation": {"type": "count"},
             "filters": [{"property": "region", "equals": "eu"},
                         {"property": "tier", "in": ["1.5", "true"]}]},
            {"code": "only_eu", "event": "other", "aggregation": {"type": "count"},
             "filters": [{"property": "region", "equals": "eu"}]}
        ]}"#,
        "
        e1 @1d api region=eu tier=1.50
        e2 @1d api region=us
        e3 @1d api region=ap tier=true
        e4 @1d api tier=1.5
        e5 @1d api region=null
        e6 @1d api region=eu tier=false
        e7 @1d other region=us
        e8 @1d other region=eu
        ",
        "
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        e5 Counted
        e6 Counted
        e7 Filtered
        e8 Counted
        counted: 7
        eu {} raw=2 qty=2 n=2
        eu_gold {} raw=1 qty=1 n=1
        eu_us {} raw=3 qty=3 n=3
        not_eu {} raw=4 qty=4 n=4
        only_eu {} raw=1 qty=1 n=1
        ",
    );
}

#[test]
fn group_by_with_a_missing_property() {
    check(
        r#"{"metrics": [
            {"code": "bytes", "aggregation": {"type": "sum", "property": "n"},
             "group_by": ["region", "plan"]}
        ]}"#,
        r#"
        e1 @1d bytes n=1 region=eu plan=pro
        e2 @1d bytes n=2 region=us
        e3 @1d bytes n=4 plan=pro
        e4 @1d bytes n=8 region=eu plan=pro
        e5 @1d bytes n=16 region="(none)" plan=pro
        e6 @1d bytes n=32 region={} plan=1.0
        "#,
        "
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        e5 Counted
        e6 Counted
        counted: 6
        bytes {plan=(none),region=us} raw=2 qty=2 n=1
        bytes {plan=1,region=(none)} raw=32 qty=32 n=1
        bytes {plan=pro,region=(none)} raw=20 qty=20 n=2
        bytes {plan=pro,region=eu} raw=9 qty=9 n=2
        ",
    );
}

#[test]
fn duplicate_ids_count_once_and_refused_ids_stay_free() {
    check(
        r#"{"metrics": [
            {"code": "calls", "aggregation": {"type": "sum", "property": "n"},
             "filters": [{"property": "ok", "equals": "true"}]}
        ]}"#,
        "
        e1 @1d calls n=1 ok=true
        e1 @2d calls n=10 ok=true
        e2 @1d calls n=100 ok=false
        e2 @1d calls n=1000 ok=true
        e3 @1d calls ok=true
        e3 @1d calls n=10000 ok=true
        e3 @1d calls n=10000 ok=true
        ",
        "
        e1 Counted
        e1 Duplicate
        e2 Filtered
        e2 Counted
        e3 error: event `e3`: metric `calls`: property `n`: missing
        e3 Counted
        e3 Duplicate
        counted: 3
        calls {} raw=11001 qty=11001 n=3
        ",
    );
}

#[test]
fn window_start_is_inclusive_and_end_exclusive() {
    check(
        r#"{"metrics": [{"code": "calls", "aggregation": {"type": "count"}}]}"#,
        "
        e1 @0ms calls
        e2 @-1ms calls
        e3 @2591999999ms calls
        e4 @30d calls
        e5 @1d nobody
        ",
        "
        e1 Counted
        e2 OutsideWindow
        e3 Counted
        e4 OutsideWindow
        e5 NoMetric
        counted: 2
        calls {} raw=2 qty=2 n=2
        ",
    );
}

#[test]
fn trial_events_are_not_counted_but_move_levels() {
    check(
        r#"{"metrics": [
            {"code": "calls", "event": "x", "aggregation": {"type": "sum", "property": "gb"}},
            {"code": "gb_days", "event": "x", "aggregation":
                {"type": "time_weighted_sum", "property": "gb", "per": "day"}},
            {"code": "gb_avg", "event": "x", "aggregation":
                {"type": "time_weighted_average", "property": "gb"}}
        ],
        "carry_in": {"gb_days": "10", "gb_avg": "10"},
        "billable_from_day": 10}"#,
        "
        e1 @5d x gb=20
        e2 @6d x gb=true
        e3 @5d other
        e4 @10d x gb=20
        ",
        "
        e1 BeforeBillable
        e2 error: event `e2`: metric `gb_days`: property `gb`: expected a number, found a boolean
        e3 NoMetric
        e4 Counted
        counted: 1
        calls {} raw=20 qty=20 n=1
        gb_avg {} raw=13.333333333333333333333333333 qty=13.333333333333333333333333333 n=1
        gb_days {} raw=400 qty=400 n=1
        ",
    );
}

const TIME_WEIGHTED: &str = r#"{"metrics": [
    {"code": "gb_days", "event": "abs", "aggregation":
        {"type": "time_weighted_sum", "property": "gb", "per": "day"}},
    {"code": "gb_hours", "event": "abs", "aggregation":
        {"type": "time_weighted_sum", "property": "gb"}},
    {"code": "gb_avg", "event": "abs", "aggregation":
        {"type": "time_weighted_average", "property": "gb"}},
    {"code": "seat_days", "event": "inc", "aggregation":
        {"type": "time_weighted_sum", "property": "d", "values": "increment", "per": "day"}},
    {"code": "seat_avg", "event": "inc", "aggregation":
        {"type": "time_weighted_average", "property": "d", "values": "increment"}},
    {"code": "by_region", "event": "abs", "group_by": ["region"], "aggregation":
        {"type": "time_weighted_average", "property": "gb"}}
],
"carry_in": {"seat_days": "10", "seat_avg": "10"}}"#;

#[test]
fn time_weighted_absolute_and_increment_with_carry_in() {
    // 10 GB for 15 days then 20 GB for 15 days: 450 GB-days, 15 GB on average.
    check(
        TIME_WEIGHTED,
        "
        a2 @15d abs gb=20 region=eu
        a1 @0d abs gb=10 region=eu
        i1 @15d inc d=10
        ",
        "
        a2 Counted
        a1 Counted
        i1 Counted
        counted: 3
        by_region {region=eu} raw=15 qty=15 n=2
        gb_avg {} raw=15 qty=15 n=2
        gb_days {} raw=450 qty=450 n=2
        gb_hours {} raw=10800 qty=10800 n=2
        seat_avg {} raw=15 qty=15 n=1
        seat_days {} raw=450 qty=450 n=1
        ",
    );
}

#[test]
fn time_weighted_events_at_one_instant_apply_in_push_order() {
    check(
        TIME_WEIGHTED,
        "
        a1 @0d abs gb=10
        a2 @15d abs gb=5
        a3 @15d abs gb=20
        i1 @15d inc d=4
        i2 @15d inc d=-4
        i3 @15d inc d=10
        ",
        "
        a1 Counted
        a2 Counted
        a3 Counted
        i1 Counted
        i2 Counted
        i3 Counted
        counted: 6
        by_region {region=(none)} raw=15 qty=15 n=3
        gb_avg {} raw=15 qty=15 n=3
        gb_days {} raw=450 qty=450 n=3
        gb_hours {} raw=10800 qty=10800 n=3
        seat_avg {} raw=15 qty=15 n=3
        seat_days {} raw=450 qty=450 n=3
        ",
    );
}

#[test]
fn time_weighted_without_events_integrates_the_carry_in() {
    check(
        TIME_WEIGHTED,
        "",
        "
        counted: 0
        by_region: no groups
        gb_avg {} raw=0 qty=0 n=0
        gb_days {} raw=0 qty=0 n=0
        gb_hours {} raw=0 qty=0 n=0
        seat_avg {} raw=10 qty=10 n=0
        seat_days {} raw=300 qty=300 n=0
        ",
    );
}

#[test]
fn conversion_bytes_to_gigabytes_rounded_up() {
    check(
        r#"{"metrics": [
            {"code": "gb", "aggregation": {"type": "sum", "property": "bytes"},
             "conversion": {"divide_by": "1000000000", "round": {"mode": "ceil"}}}
        ]}"#,
        "
        e1 @1d gb bytes=1000000000
        e2 @1d gb bytes=1
        ",
        "
        e1 Counted
        e2 Counted
        counted: 2
        gb {} raw=1000000001 qty=2 n=2
        ",
    );
}

#[test]
fn convert_rounds_with_the_named_strategy() {
    let cases = [
        // (multiply_by, divide_by, mode, precision, raw, expected)
        (None, None, None, 0, "2.5", "2.5"),
        (Some("3"), None, None, 0, "2.5", "7.5"),
        (None, Some("3"), Some("round"), 2, "1", "0.33"),
        (None, None, Some("round"), 0, "2.5", "3"),
        (None, None, Some("round"), 0, "-2.5", "-3"),
        (None, None, Some("round"), 0, "3.5", "4"),
        (None, None, Some("ceil"), 0, "2.1", "3"),
        (None, None, Some("ceil"), 0, "-2.9", "-2"),
        (None, None, Some("ceil"), 0, "-0.4", "0"),
        (None, None, Some("floor"), 1, "2.19", "2.1"),
        (None, None, Some("floor"), 0, "-2.1", "-3"),
        (None, Some("1000"), Some("ceil"), 30, "1", "0.001"),
        // Negative precision (Lago's rounding_precision): to tens, hundreds.
        (None, None, Some("round"), -1, "123.4567", "120"),
        (None, None, Some("round"), -1, "125", "130"),
        (None, None, Some("round"), -1, "-125", "-130"),
        (None, None, Some("ceil"), -2, "101", "200"),
        (None, None, Some("ceil"), -2, "-101", "-100"),
        (None, None, Some("floor"), -2, "199.99", "100"),
        (None, None, Some("floor"), -3, "999", "0"),
        (None, None, Some("ceil"), -1, "0", "0"),
    ];
    for (multiply_by, divide_by, mode, precision, raw, expected) in cases {
        let mut conversion = serde_json::json!({});
        if let Some(m) = multiply_by {
            conversion["multiply_by"] = m.into();
        }
        if let Some(d) = divide_by {
            conversion["divide_by"] = d.into();
        }
        if let Some(mode) = mode {
            conversion["round"] = serde_json::json!({"mode": mode, "precision": precision});
        }
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "code": "m", "aggregation": {"type": "count"}, "conversion": conversion
        }))
        .unwrap();
        let actual = convert(&metric, raw.parse().unwrap()).unwrap().to_string();
        assert_eq!(actual, expected, "{conversion} of {raw}");
    }
    let overflow: Metric = serde_json::from_value(serde_json::json!({
        "code": "m", "aggregation": {"type": "count"},
        "conversion": {"multiply_by": "79228162514264337593543950335"}
    }))
    .unwrap();
    assert_eq!(
        convert(&overflow, Decimal::TWO).unwrap_err().to_string(),
        "metric `m`: the aggregated value overflows the decimal range"
    );
    // Rounding up to the next 10^28 does not fit: an overflow error, not a panic.
    let huge: Metric = serde_json::from_value(serde_json::json!({
        "code": "m", "aggregation": {"type": "count"},
        "conversion": {"round": {"mode": "ceil", "precision": -28}}
    }))
    .unwrap();
    assert!(convert(&huge, Decimal::MAX).is_err());
    let beyond: Metric = serde_json::from_value(serde_json::json!({
        "code": "m", "aggregation": {"type": "count"},
        "conversion": {"round": {"mode": "ceil", "precision": -40}}
    }))
    .unwrap();
    assert!(convert(&beyond, Decimal::ONE).is_err());
}

#[test]
fn a_bad_event_changes_nothing_and_the_next_good_event_counts() {
    check(
        r#"{"metrics": [
            {"code": "calls", "event": "api", "aggregation": {"type": "count"}},
            {"code": "users", "event": "api", "aggregation": {"type": "unique_count", "property": "user"}},
            {"code": "by_region", "event": "api", "group_by": ["region"], "aggregation": {"type": "count"}},
            {"code": "bytes", "event": "api", "aggregation": {"type": "sum", "property": "bytes"}}
        ]}"#,
        r#"
        e1 @1d api bytes=1 user=a region=eu
        e2 @1d api bytes=true user=b region=us
        e2 @1d api bytes=abc user=b region=us
        e2 @1d api bytes={} user=b region=us
        e2 @1d api bytes=null user=b region=us
        e2 @1d api bytes="2" user=b region=us
        "#,
        "
        e1 Counted
        e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found a boolean
        e2 error: event `e2`: metric `bytes`: property `bytes`: `abc` is not a decimal number
        e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found an object or array
        e2 error: event `e2`: metric `bytes`: property `bytes`: expected a number, found null
        e2 Counted
        counted: 2
        by_region {region=eu} raw=1 qty=1 n=1
        by_region {region=us} raw=1 qty=1 n=1
        bytes {} raw=3 qty=3 n=2
        calls {} raw=2 qty=2 n=2
        users {} raw=2 qty=2 n=2
        ",
    );
}

#[test]
fn transactions_only_for_percentage_charges_with_per_transaction_bounds() {
    check(
        r#"{"metrics": [
            {"code": "pay", "aggregation": {"type": "sum", "property": "amount"},
             "group_by": ["currency"]},
            {"code": "pay_plain", "event": "pay", "aggregation": {"type": "sum", "property": "amount"}},
            {"code": "pay_count", "event": "pay", "aggregation": {"type": "count"}},
            {"code": "pay_capped", "event": "pay", "aggregation": {"type": "max", "property": "amount"}}
        ],
        "charges": [
            {"id": "fee", "metric": "pay", "model": {"type": "percentage", "percent": "2.9", "min_per_transaction": "0.30"}},
            {"id": "plain", "metric": "pay_plain", "model": {"type": "percentage", "percent": "1"}},
            {"id": "count", "metric": "pay_count", "model": {"type": "percentage", "percent": "1", "max_per_transaction": "5"}},
            {"id": "capped", "metric": "pay_capped", "model": {"type": "per_unit", "unit_price": "1"}}
        ]}"#,
        "
        e1 @1d pay amount=10 currency=usd
        e2 @2d pay amount=2.50 currency=eur
        e3 @1d pay amount=7 currency=usd
        e4 @1d pay amount=7 currency=usd
        ",
        "
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        counted: 4
        pay {currency=eur} raw=2.50 qty=2.50 n=1 tx=[2.50]
        pay {currency=usd} raw=24 qty=24 n=3 tx=[10,7,7]
        pay_capped {} raw=10 qty=10 n=4
        pay_count {} raw=4 qty=4 n=4 tx=[1,1,1,1]
        pay_plain {} raw=26.50 qty=26.50 n=4
        ",
    );
}

#[test]
fn custom_metric_through_a_plugin() {
    check(
        r#"{"metrics": [
            {"code": "total", "event": "job", "aggregation":
                {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}}},
            {"code": "by_region", "event": "job", "group_by": ["region"], "aggregation":
                {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}},
             "filters": [{"property": "region", "equals": "ap", "negate": true}]},
            {"code": "idle", "event": "nothing", "aggregation":
                {"type": "custom", "plugin": "sum@1", "config": {"property": "gpu"}}}
        ]}"#,
        "
        e1 @1d job gpu=1.5 region=eu
        e2 @1d job gpu=2 region=us
        e3 @1d job gpu=4 region=eu
        e4 @1d job gpu=8 region=ap
        ",
        "
        e1 Counted
        e2 Counted
        e3 Counted
        e4 Counted
        counted: 4
        by_region {region=eu} raw=5.5 qty=5.5 n=2
        by_region {region=us} raw=2 qty=2 n=1
        idle {} raw=0 qty=0 n=0
        total {} raw=15.5 qty=15.5 n=4
        ",
    );
}

#[test]
fn custom_metric_events_reach_the_plugin_in_batches() {
    let plugins = TestPlugins::default();
    let metrics: Vec<Metric> = serde_json::from_str(
        r#"[{"code": "total", "aggregation":
            {"type": "custom", "plugin": "sum@1", "config": {"property": "n"}}}]"#,
    )
    .unwrap();
    let window = Window {
        start: Timestamp(0),
        end: Timestamp(DAY),
    };
    let mut aggregator = Aggregator::new(
        &metrics,
        &[],
        window,
        Timestamp(0),
        &BTreeMap::new(),
        &plugins,
    )
    .unwrap();
    for i in 0..2500 {
        let event = Event {
            id: Cow::Owned(format!("e{i}")),
            customer: Cow::Borrowed(""),
            timestamp: Timestamp(i),
            code: Cow::Borrowed("total"),
            properties: [(Cow::Borrowed("n"), PropValue::Num(Ok(Decimal::ONE)))].into(),
        };
        assert_eq!(aggregator.push(&event), Ok(Outcome::Counted));
    }
    assert_eq!(plugins.n_updates.load(Ordering::Relaxed), 2);
    let usage = aggregator.finish().unwrap();
    assert_eq!(plugins.n_updates.load(Ordering::Relaxed), 3);
    assert_eq!(usage.metrics["total"][0].quantity, Decimal::from(2500));
}

#[test]
fn custom_metric_failures_name_the_metric() {
    check(
        r#"{"metrics": [{"code": "m", "aggregation": {"type": "custom", "plugin": "nope@1"}}]}"#,
        "",
        "new: metric `m`: plugin `nope@1` is not available",
    );
    check(
        r#"{"metrics": [{"code": "m", "group_by": ["r"],
            "aggregation": {"type": "custom", "plugin": "picky@1"}}]}"#,
        "",
        "new: metric `m`: plugin `picky@1` rejected its config: no config is good enough",
    );
    check(
        r#"{"metrics": [
            {"code": "ok", "event": "e", "aggregation": {"type": "count"}},
            {"code": "m", "event": "e", "aggregation": {"type": "custom", "plugin": "fail@1"}}
        ]}"#,
        "e1 @1d e",
        "
        e1 Counted
        counted: 1
        finish: metric `m`: plugin `fail@1` failed: boom
        ",
    );
}

#[test]
fn a_sum_overflow_fails_the_aggregation() {
    check(
        r#"{"metrics": [{"code": "m", "aggregation": {"type": "sum", "property": "n"}}]}"#,
        r#"
        e1 @1d m n="79228162514264337593543950335"
        e2 @1d m n=1
        "#,
        "
        e1 Counted
        e2 Counted
        counted: 2
        finish: metric `m`: the aggregated value overflows the decimal range
        ",
    );
}

#[test]
fn invalid_setups_are_refused_by_new() {
    let count = r#"{"code": "m", "aggregation": {"type": "count"}}"#;
    let level = r#"{"code": "lvl", "group_by": ["r"],
        "aggregation": {"type": "time_weighted_average", "property": "n"}}"#;
    let cases = [
        (format!(r#"{{"metrics": [{count}, {count}]}}"#), "new: metric `m` is defined twice"),
        (
            format!(r#"{{"metrics": [{count}], "carry_in": {{"x": "1"}}}}"#),
            "new: carry-in given for unknown metric `x`",
        ),
        (
            format!(r#"{{"metrics": [{count}], "carry_in": {{"m": "1"}}}}"#),
            "new: metric `m`: carry-in applies only to time-weighted metrics",
        ),
        (
            format!(r#"{{"metrics": [{level}], "carry_in": {{"lvl": "1"}}}}"#),
            "new: metric `lvl`: carry-in applies only to ungrouped metrics",
        ),
        (
            r#"{"metrics": [{"code": "m", "aggregation": {"type": "count"},
                "conversion": {"divide_by": "0"}}]}"#
                .to_owned(),
            "new: metric `m`: invalid conversion: `divide_by` is zero",
        ),
        (
            r#"{"metrics": [{"code": "m", "aggregation": {"type": "unique_count", "property": "u"}}],
                "charges": [{"id": "c", "metric": "m",
                    "model": {"type": "percentage", "percent": "1", "min_per_transaction": "1"}}]}"#
                .to_owned(),
            "new: metric `m`: charge `c` needs per-transaction amounts, which a unique_count metric does not have",
        ),
        (
            format!(r#"{{"metrics": [{count}], "window_days": -1}}"#),
            "new: the window [0, -86400000) ends before it starts or is too long",
        ),
    ];
    for (case, expected) in cases {
        check(&case, "", expected);
    }
}

/// An empty window (a zero-length period) takes no event and aggregates to zero; a
/// time-weighted average of it is 0, not a division by its zero length.
#[test]
fn an_empty_window_aggregates_nothing() {
    check(
        r#"{"metrics": [
            {"code": "calls", "aggregation": {"type": "count"}},
            {"code": "gb", "aggregation": {"type": "time_weighted_average", "property": "gb"}}],
            "carry_in": {"gb": "5"}, "window_days": 0}"#,
        "e1 @0d calls\ne2 @0d gb gb=3",
        "
        e1 OutsideWindow
        e2 OutsideWindow
        counted: 0
        calls {} raw=0 qty=0 n=0
        gb {} raw=0 qty=0 n=0
        ",
    );
}

#[test]
fn event_error_display() {
    let error = EventError {
        event_id: "e17".into(),
        metric: Some("storage".into()),
        property: Some("bytes".into()),
        message: "expected a number, found a boolean".into(),
    };
    assert_eq!(
        error.to_string(),
        "event `e17`: metric `storage`: property `bytes`: expected a number, found a boolean"
    );
    let bare = EventError {
        metric: None,
        property: None,
        ..error
    };
    assert_eq!(
        bare.to_string(),
        "event `e17`: expected a number, found a boolean"
    );
}

#[test]
fn a_full_id_index_refuses_new_events() {
    // An aggregator whose id index is full refuses new ids with an error and counts
    // nothing of them; repeated ids are still duplicates.
    let metrics: Vec<Metric> = serde_json::from_str(
        r#"[{"code": "calls", "event": "api", "aggregation": {"type": "count"}}]"#,
    )
    .unwrap();
    let window = Window {
        start: Timestamp(0),
        end: Timestamp(DAY),
    };
    let carry_in = BTreeMap::new();
    let mut aggregator = Aggregator::new(
        &metrics,
        &[],
        window,
        Timestamp(0),
        &carry_in,
        &crate::plugin::NoPlugins,
    )
    .unwrap();
    aggregator.seen_ids.max_ids = 1;
    let event = |id: &str| -> Event<'static> {
        serde_json::from_str::<Event<'_>>(&format!(
            r#"{{"id": "{id}", "timestamp": 1000, "code": "api"}}"#
        ))
        .unwrap()
        .into_owned()
    };
    assert_eq!(aggregator.push(&event("e1")), Ok(Outcome::Counted));
    assert_eq!(aggregator.push(&event("e1")), Ok(Outcome::Duplicate));
    let error = aggregator.push(&event("e2")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "event `e2`: more than 4294967294 distinct event ids in one aggregation"
    );
    assert_eq!(aggregator.n_counted(), 1);
}

fn permutation_case() -> impl Strategy<Value = (Vec<(i64, u32, u8)>, Vec<usize>)> {
    prop::collection::vec((-10_000i64..10_000, 0u32..4, 0u8..5), 0..40).prop_flat_map(|values| {
        let order: Vec<usize> = (0..values.len()).collect();
        (Just(values), Just(order).prop_shuffle())
    })
}

proptest! {
    /// Count, sum, max, min and unique_count do not depend on push order.
    #[test]
    fn built_ins_ignore_push_order((values, order) in permutation_case()) {
        let case: Case = serde_json::from_str(ALL_BUILT_INS).unwrap();
        let events: Vec<Event<'static>> = values
            .iter()
            .enumerate()
            .map(|(i, &(mantissa, scale, user))| Event {
                id: Cow::Owned(format!("e{i}")),
                customer: Cow::Borrowed(""),
                timestamp: Timestamp(DAY),
                code: Cow::Borrowed("api"),
                properties: [
                    (Cow::Borrowed("bytes"), PropValue::Num(Ok(Decimal::new(mantissa, scale)))),
                    (Cow::Borrowed("user"), PropValue::Str(Cow::Owned(format!("u{user}")))),
                ]
                .into(),
            })
            .collect();
        let window = Window { start: Timestamp(0), end: Timestamp(30 * DAY) };
        let aggregate = |order: &mut dyn Iterator<Item = usize>| {
            let mut aggregator = Aggregator::new(
                &case.metrics, &[], window, Timestamp(0), &BTreeMap::new(), &crate::plugin::NoPlugins,
            )
            .unwrap();
            for i in order {
                assert_eq!(aggregator.push(&events[i]), Ok(Outcome::Counted));
            }
            let mut usage = aggregator.finish().unwrap();
            usage.metrics.remove("last");
            usage
        };
        let in_order = aggregate(&mut (0..events.len()));
        let shuffled = aggregate(&mut order.iter().copied());
        prop_assert_eq!(&in_order, &shuffled);
        let sum: Decimal = values.iter().map(|&(m, s, _)| Decimal::new(m, s)).sum();
        prop_assert_eq!(in_order.metrics["bytes"][0].raw_value, sum);
    }

    /// A unique count that follows `add` / `remove` operations does not depend on push order
    /// when timestamps differ: each value's latest operation decides, whatever came first.
    #[test]
    fn operations_follow_timestamps_not_push_order((values, order) in permutation_case()) {
        let metrics: Vec<Metric> = serde_json::from_str(
            r#"[{"code": "seats", "recurrence": "carried_over",
                 "aggregation": {"type": "unique_count", "property": "seat"}}]"#,
        )
        .unwrap();
        let events: Vec<Event<'static>> = values
            .iter()
            .enumerate()
            .map(|(i, &(_, scale, seat))| Event {
                id: Cow::Owned(format!("e{i}")),
                customer: Cow::Borrowed(""),
                timestamp: Timestamp(DAY + i as i64),
                code: Cow::Borrowed("seats"),
                properties: [
                    (Cow::Borrowed("seat"), PropValue::Str(Cow::Owned(format!("s{seat}")))),
                    (
                        Cow::Borrowed("operation_type"),
                        PropValue::Str(Cow::Borrowed(if scale % 2 == 0 { "add" } else { "remove" })),
                    ),
                ]
                .into(),
            })
            .collect();
        let window = Window { start: Timestamp(0), end: Timestamp(30 * DAY) };
        let carried = BTreeMap::from([("seats".to_owned(), vec!["s0".to_owned(), "s9".to_owned()])]);
        let aggregate = |order: &mut dyn Iterator<Item = usize>| {
            let mut aggregator = Aggregator::routed(
                &metrics, &[], None, window, Timestamp(0), (&BTreeMap::new(), &carried),
                &crate::plugin::NoPlugins,
            )
            .unwrap();
            for i in order {
                assert_eq!(aggregator.push(&events[i]), Ok(Outcome::Counted));
            }
            aggregator.finish().unwrap()
        };
        let in_order = aggregate(&mut (0..events.len()));
        let shuffled = aggregate(&mut order.iter().copied());
        prop_assert_eq!(&in_order, &shuffled);
        // The last operation of each seat, in time order, from the carried s0 and s9.
        let mut active: BTreeMap<String, bool> =
            [("s0".to_owned(), true), ("s9".to_owned(), true)].into();
        for &(_, scale, seat) in &values {
            active.insert(format!("s{seat}"), scale % 2 == 0);
        }
        let expected: Vec<String> =
            active.into_iter().filter(|(_, on)| *on).map(|(seat, _)| seat).collect();
        let group = &in_order.metrics["seats"][0];
        prop_assert_eq!(group.raw_value, Decimal::from(expected.len()));
        prop_assert_eq!(&group.values.as_ref().unwrap().active, &expected);
    }
}
