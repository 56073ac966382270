//! `rate_stream` against the engine's plain `quote`, and against itself on any number of threads:
//! chunking, customer shards and the grouping of a chunk's events must change nothing.

use std::collections::BTreeMap;
use std::io::Cursor;

use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::rate::PreparedPlan;
use ratecard_engine::rate::quote;
use ratecard_engine::usage::{Customer, Event, PeriodSelector, Usage};
use ratecard_host::rating::{Collected, RateRequest, RateSummary, rate_stream};

/// A count with an allowance and tiers, a converted sum, a sum grouped by region.
const PLAN: &str = r#"{
  "id": "stream-test",
  "currency": "USD",
  "interval": "month",
  "metrics": [
    {"code": "api_calls", "name": "API calls", "event": "api.request", "aggregation": {"type": "count"}},
    {"code": "storage_kb", "name": "Storage writes", "event": "storage.write",
     "aggregation": {"type": "sum", "property": "value"},
     "conversion": {"divide_by": "1000", "round": {"mode": "ceil", "precision": 0}}},
    {"code": "compute_s", "name": "Compute seconds", "event": "compute.run",
     "aggregation": {"type": "sum", "property": "value"}, "group_by": ["region"]},
    {"code": "peak", "name": "Peak", "event": "compute.run", "aggregation": {"type": "max", "property": "value"}}
  ],
  "charges": [
    {"id": "platform", "description": "Platform fee", "model": {"type": "flat", "amount": "49.00"}},
    {"id": "api", "metric": "api_calls", "included": "10", "model": {"type": "graduated", "tiers": [
      {"up_to": "50", "unit_price": "0.002"},
      {"up_to": null, "unit_price": "0.001"}
    ]}},
    {"id": "storage", "metric": "storage_kb", "model": {"type": "per_unit", "unit_price": "0.00023"}},
    {"id": "compute", "metric": "compute_s", "model": {"type": "graduated", "tiers": [
      {"up_to": "100", "unit_price": "0.0004", "flat_fee": "1.00"},
      {"up_to": null, "unit_price": "0.0003"}
    ]}},
    {"id": "peak", "metric": "peak", "model": {"type": "per_unit", "unit_price": "0.01"}}
  ],
  "taxes": [{"id": "vat", "name": "VAT", "percent": "20"}]
}"#;

/// xorshift64: deterministic variety without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` events of `n_customers` customers in November 2026, with repeated ids (within and across
/// customers), events of December and of an unknown code; with `bad_lines`, also malformed
/// lines, events without a customer and events missing their property.
fn events(n: usize, n_customers: u64, bad_lines: bool) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::new();
    for i in 0..n {
        let customer = if rng.below(2) == 0 {
            rng.below(n_customers.div_ceil(10))
        } else {
            rng.below(n_customers)
        };
        // One id in 16 repeats an earlier one (a retried delivery).
        let id = if i > 0 && rng.below(16) == 0 {
            rng.below(i as u64)
        } else {
            i as u64
        };
        let month = if rng.below(50) == 0 { 12 } else { 11 };
        let (code, value) = match rng.below(20) {
            0 => ("unknown.code", "1".to_owned()),
            1..=10 => ("api.request", "1".to_owned()),
            11..=14 => ("storage.write", (1 + rng.below(100_000)).to_string()),
            _ => (
                "compute.run",
                format!("{}.{:02}", rng.below(120), rng.below(100)),
            ),
        };
        let region = ["eu", "us", "ap"][rng.below(3) as usize];
        if bad_lines {
            match rng.below(40) {
                0 => {
                    out.push_str("{\"id\": \"broken\n");
                    continue;
                }
                1 => {
                    out.push_str(&format!(
                        "{{\"id\":\"e{id}\",\"timestamp\":\"2026-11-02T00:00:00Z\",\"code\":\"api.request\"}}\n"
                    ));
                    continue;
                }
                2 => {
                    out.push_str(&format!(
                        "{{\"id\":\"e{id}\",\"customer\":\"c{customer}\",\"timestamp\":\"2026-11-02T00:00:00Z\",\"code\":\"compute.run\",\"properties\":{{\"region\":\"eu\"}}}}\n"
                    ));
                    continue;
                }
                3 => out.push('\n'),
                _ => {}
            }
        }
        out.push_str(&format!(
            "{{\"id\":\"e{id}\",\"customer\":\"c{customer}\",\"timestamp\":\"2026-{month:02}-{:02}T{:02}:{:02}:00Z\",\"code\":\"{code}\",\"properties\":{{\"value\":{value},\"region\":\"{region}\"}}}}\n",
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
        ));
    }
    out
}

/// `rate_stream` of `input`, with every customer's result collected.
fn rate_with(plan: &Plan, input: &[u8], request: &RateRequest) -> (RateSummary, Collected) {
    let prepared = PreparedPlan::of(plan).expect("a valid plan");
    let mut collected = Collected::default();
    let summary = rate_stream(
        &prepared,
        Cursor::new(input),
        request,
        &NoPlugins,
        |_| {},
        |rated| collected.push(rated),
    )
    .expect("rate_stream");
    (summary, collected)
}

fn rate(plan: &Plan, text: &str, threads: usize) -> (RateSummary, Collected) {
    let request = RateRequest {
        period: "2026-11".to_owned(),
        threads,
        ..RateRequest::default()
    };
    rate_with(plan, text.as_bytes(), &request)
}

fn invoices_json(collected: &Collected) -> String {
    serde_json::to_string(&collected.invoices).expect("invoices to JSON")
}

#[test]
fn every_thread_count_gives_the_same_invoices_errors_and_counts() {
    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    // More lines than one chunk, so chunk boundaries are crossed.
    let text = events(40_000, 300, true);
    let (one, one_rated) = rate(&plan, &text, 1);
    assert!(one.errors.len() > 1000, "{} errors", one.errors.len());
    assert!(one.errors.windows(2).all(|w| w[0].line < w[1].line));
    assert!(
        one.errors
            .iter()
            .any(|e| e.message.contains("has no `customer`"))
    );
    assert!(one.errors.iter().any(|e| e.message.contains("property")));
    assert!(one.n_skipped > 0 && one.n_counted > 30_000);
    for threads in [2, 3, 8] {
        let (many, many_rated) = rate(&plan, &text, threads);
        assert_eq!(
            invoices_json(&one_rated),
            invoices_json(&many_rated),
            "{threads} threads"
        );
        assert_eq!(one.errors, many.errors, "{threads} threads");
        assert_eq!(
            (one.n_lines, one.n_counted, one.n_skipped),
            (many.n_lines, many.n_counted, many.n_skipped),
            "{threads} threads"
        );
    }
}

#[test]
fn streaming_gives_each_customer_the_invoice_of_a_plain_quote() {
    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    let text = events(20_000, 50, false);
    let (summary, rated) = rate(&plan, &text, 0);
    assert!(summary.errors.is_empty(), "{:?}", &summary.errors[..1]);
    let mut by_customer: BTreeMap<String, Vec<Event<'static>>> = BTreeMap::new();
    for line in text.lines() {
        let event: Event<'_> = serde_json::from_str(line).expect("event");
        by_customer
            .entry(event.customer.to_string())
            .or_default()
            .push(event.into_owned());
    }
    assert_eq!(rated.invoices.len(), by_customer.len());
    for (invoice, (customer, events)) in rated.invoices.iter().zip(by_customer) {
        let usage = Usage {
            customer: Customer {
                id: customer.clone(),
                ..Customer::default()
            },
            period: Some(PeriodSelector::Containing {
                containing: "2026-11-01".to_owned(),
            }),
            subscription: None,
            quantities: Default::default(),
            events,
            carry_in: Default::default(),
            credits: Vec::new(),
            plan_change: None,
            split_line: None,
        };
        let mut expected = quote(&plan, &usage, &NoPlugins).expect("quote");
        // The hash covers the quote's events; a streamed invoice's hash covers its setup.
        expected.input_hash.clone_from(&invoice.input_hash);
        assert_eq!(
            serde_json::to_value(invoice).expect("json"),
            serde_json::to_value(&expected).expect("json"),
            "customer {customer}"
        );
    }
}

#[test]
fn a_line_that_is_not_utf8_is_one_bad_line() {
    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(
        b"{\"id\":\"e1\",\"customer\":\"c1\",\"timestamp\":\"2026-11-02T00:00:00Z\",\"code\":\"api.request\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"id\":\"e2\",\"customer\":\"c\xff\xfe\",\"timestamp\":\"2026-11-02T00:00:00Z\",\"code\":\"api.request\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"id\":\"e3\",\"customer\":\"c1\",\"timestamp\":\"2026-11-03T00:00:00Z\",\"code\":\"api.request\"}\n",
    );
    let request = RateRequest {
        period: "2026-11".to_owned(),
        ..RateRequest::default()
    };
    let (summary, _) = rate_with(&plan, &bytes, &request);
    assert_eq!(summary.n_lines, 3);
    assert_eq!(summary.n_counted, 2);
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.errors[0].line, 2);
    assert!(
        summary.errors[0].message.starts_with("not a valid event"),
        "{}",
        summary.errors[0].message
    );
}

#[test]
fn a_chunk_of_blank_lines_does_not_end_the_run() {
    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    let text = format!("{}{}", "\n".repeat(40_000), events(500, 20, false));
    for threads in [1, 2] {
        let (summary, _) = rate(&plan, &text, threads);
        assert_eq!(summary.n_lines, 40_500, "{threads} threads");
        assert!(summary.n_counted > 400, "{threads} threads");
        assert_eq!(
            summary.n_counted + summary.n_skipped,
            500,
            "{threads} threads"
        );
    }
}

/// Chunks are read as blocks of bytes cut after their last line break; `--strict` reads line by
/// line. Both see the same lines, numbered the same, across block boundaries, CRLF line ends
/// and a last line without a line break.
#[test]
fn block_reading_sees_the_lines_line_reading_sees() {
    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    let mut text = events(40_000, 300, false).replace("}}\n", "}}\r\n");
    text.push_str(r#"{"id":"last","customer":"c1","timestamp":"2026-11-30T23:00:00Z","code":"api.request","properties":{"value":1,"region":"eu"}}"#);
    assert!(
        text.len() > 5 << 20,
        "{} bytes: more than two blocks",
        text.len()
    );
    let run = |strict: bool| {
        let request = RateRequest {
            period: "2026-11".to_owned(),
            threads: 1,
            strict,
            ..RateRequest::default()
        };
        rate_with(&plan, text.as_bytes(), &request)
    };
    let ((blocks, blocks_rated), (lines, lines_rated)) = (run(false), run(true));
    assert!(
        lines.errors.is_empty() && !lines.stopped,
        "{:?}",
        lines.errors.first()
    );
    assert_eq!(blocks.errors, lines.errors);
    assert_eq!(invoices_json(&blocks_rated), invoices_json(&lines_rated));
    assert_eq!(
        (blocks.n_lines, blocks.n_counted, blocks.n_skipped),
        (lines.n_lines, lines.n_counted, lines.n_skipped)
    );
    assert_eq!(blocks.n_lines, text.lines().count() as u64);
}

/// Every customer reaches the sink once, in customer order, across the batches invoices are
/// priced in; a customer whose setup cannot be rated gets a typed reason, not a string, and a
/// customer subscribed after the period is not started.
#[test]
fn each_customer_reaches_the_sink_once_in_order_with_a_typed_outcome() {
    use ratecard_engine::period::PeriodError;
    use ratecard_engine::rate::RateError;
    use ratecard_engine::usage::{CustomerSetup, Subscription};
    use ratecard_host::rating::{RatedOutcome, StreamError};

    let plan: Plan = serde_json::from_str(PLAN).expect("plan");
    let prepared = PreparedPlan::of(&plan).expect("a valid plan");
    // 1,300 customers with events: more than two batches of invoices.
    let text = events(6_000, 1_300, false);
    let mut customers = BTreeMap::new();
    customers.insert(
        "c7".to_owned(),
        CustomerSetup {
            timezone: Some("Mars/Olympus_Mons".to_owned()),
            ..CustomerSetup::default()
        },
    );
    let later = CustomerSetup {
        subscription: Some(Subscription {
            start: "2027-01-10".to_owned(),
            billing_anchor: None,
            end: None,
        }),
        ..CustomerSetup::default()
    };
    customers.insert("c8".to_owned(), later);
    customers.insert("zz-no-events".to_owned(), CustomerSetup::default());
    for threads in [1, 2] {
        let request = RateRequest {
            period: "2026-11-15".to_owned(),
            customers: customers.clone(),
            threads,
            ..RateRequest::default()
        };
        let mut seen = Vec::new();
        let summary = rate_stream(
            &prepared,
            Cursor::new(text.as_bytes()),
            &request,
            &NoPlugins,
            |_| {},
            |rated| seen.push(rated),
        )
        .expect("rate_stream");
        assert!(summary.errors.is_empty(), "{:?}", summary.errors.first());
        let ids: Vec<&str> = seen.iter().map(|r| r.customer.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "{threads} threads: in order, each once");
        assert!(ids.len() > 1_000, "{} customers", ids.len());
        let outcome = |id: &str| &seen[ids.binary_search(&id).expect(id)].outcome;
        assert!(
            matches!(
                outcome("c7"),
                RatedOutcome::Failed(RateError::Period { path, error: PeriodError::UnknownTimezone(_) })
                    if path == "$.customer.timezone"
            ),
            "{:?}",
            outcome("c7")
        );
        assert!(matches!(outcome("c8"), RatedOutcome::NotStarted));
        let RatedOutcome::Invoice(invoice) = outcome("zz-no-events") else {
            panic!("{:?}", outcome("zz-no-events"));
        };
        assert_eq!(invoice.period.start, "2026-11-01T00:00:00+00:00");
    }
    // A period that is not a date is the request's error, named by its path, before any line.
    let request = RateRequest {
        period: "the 15th".to_owned(),
        ..RateRequest::default()
    };
    let error = rate_stream(
        &prepared,
        Cursor::new(text.as_bytes()),
        &request,
        &NoPlugins,
        |_| {},
        |_| panic!("no customer is rated"),
    )
    .expect_err("a bad period");
    assert!(
        matches!(&error, StreamError::Request(RateError::Period { path, .. }) if path == "$.period"),
        "{error:?}"
    );
}
