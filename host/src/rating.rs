//! Rating an NDJSON event stream: one invoice per customer for one period.
//!
//! Events are parsed one line at a time into borrowed [`Event`]s (no allocation for the usual
//! line) and pushed into one [`Aggregator`] per customer. A malformed line or a bad event is
//! reported with its line number and the run goes on (unless `strict`), so one bad line never
//! drops the good ones.

use std::collections::HashMap;
use std::io::BufRead;

use ratecard_engine::meter::{Aggregator, Outcome, Window};
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{QuoteContext, RateError, context, input_hash, price_usage};
use ratecard_engine::usage::{Customer, Event, PeriodSelector, Usage};
use ratecard_engine::{Decimal, invoice::Invoice};

/// How to rate a stream.
#[derive(Clone, Debug)]
pub struct RateOptions {
    /// The period: a date or date-time inside it (`"2026-11-15"`), or a month (`"2026-11"`).
    pub period: String,
    /// IANA timezone of every customer (default UTC).
    pub timezone: Option<String>,
    /// Stop at the first bad line instead of reporting it and going on.
    pub strict: bool,
}

/// A line that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The result of rating a stream.
#[derive(Debug, Default)]
pub struct RateSummary {
    /// One invoice per customer, sorted by customer id.
    pub invoices: Vec<Invoice>,
    /// Customers whose invoice could not be computed, with the reason.
    pub failed: Vec<(String, String)>,
    pub n_lines: u64,
    pub n_counted: u64,
    /// Events outside the period, of no metric, filtered out or duplicates.
    pub n_skipped: u64,
    pub errors: Vec<LineError>,
    /// True when `strict` stopped the run at the first error.
    pub stopped: bool,
}

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("reading the events: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Rate(#[from] RateError),
}

/// Normalizes `--period` text: a month `2026-11` means its first day.
pub fn period_text(period: &str) -> String {
    let is_month = period.len() == 7 && period.as_bytes()[4] == b'-' && period.chars().filter(|c| c.is_ascii_digit()).count() == 6;
    if is_month { format!("{period}-01") } else { period.to_owned() }
}

fn template_usage(customer_id: &str, options: &RateOptions) -> Usage {
    Usage {
        customer: Customer { id: customer_id.to_owned(), timezone: options.timezone.clone(), attributes: Default::default() },
        subscription: None,
        period: Some(PeriodSelector::Containing { containing: period_text(&options.period) }),
        quantities: Default::default(),
        events: Vec::new(),
        carry_in: Default::default(),
        credits: Vec::new(),
        plan_change: None,
    }
}

/// Rates every customer's events in `reader` (NDJSON) for one period. `progress` is called with
/// the bytes read so far, every 64 KiB or so.
pub fn rate_stream(
    plan: &Plan,
    reader: impl BufRead,
    options: &RateOptions,
    plugins: &dyn PluginHost,
    mut progress: impl FnMut(u64),
) -> Result<RateSummary, StreamError> {
    let report = ratecard_engine::validate::validate_plan(plan);
    if !report.is_ok() {
        return Err(RateError::InvalidPlan(report.errors).into());
    }
    let ctx: QuoteContext = context(plan, &template_usage("", options))?;
    let window = Window { start: ctx.period.start, end: ctx.period.end };
    let carry_in = Default::default();
    let mut aggregators: HashMap<Box<str>, Aggregator<'_>> = HashMap::new();
    let mut summary = RateSummary::default();
    let mut reader = reader;
    let mut buffer = String::new();
    let (mut n_bytes, mut last_report) = (0u64, 0u64);
    loop {
        buffer.clear();
        let n_read = reader.read_line(&mut buffer)?;
        if n_read == 0 {
            break;
        }
        n_bytes += n_read as u64;
        if n_bytes - last_report >= 1 << 16 {
            progress(n_bytes);
            last_report = n_bytes;
        }
        summary.n_lines += 1;
        let line_no = summary.n_lines;
        let text = buffer.trim_end();
        if text.is_empty() {
            continue;
        }
        let event: Event<'_> = match serde_json::from_str(text) {
            Ok(event) => event,
            Err(error) => {
                summary.errors.push(LineError { line: line_no, message: format!("not a valid event: {error}") });
                if options.strict {
                    summary.stopped = true;
                    break;
                }
                continue;
            }
        };
        if event.customer.is_empty() {
            summary.errors.push(LineError { line: line_no, message: format!("event `{}` has no `customer`", event.id) });
            if options.strict {
                summary.stopped = true;
                break;
            }
            continue;
        }
        let aggregator = match aggregators.get_mut(event.customer.as_ref()) {
            Some(aggregator) => aggregator,
            None => {
                let aggregator = Aggregator::new(&plan.metrics, &plan.charges, window, ctx.billable_from, &carry_in, plugins)
                    .map_err(RateError::from)?;
                aggregators.entry(event.customer.as_ref().into()).or_insert(aggregator)
            }
        };
        match aggregator.push(&event) {
            Ok(Outcome::Counted) => summary.n_counted += 1,
            Ok(_) => summary.n_skipped += 1,
            Err(error) => {
                summary.errors.push(LineError { line: line_no, message: error.to_string() });
                if options.strict {
                    summary.stopped = true;
                    break;
                }
            }
        }
    }
    progress(n_bytes);
    let mut customers: Vec<(Box<str>, Aggregator<'_>)> = aggregators.into_iter().collect();
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    for (customer, aggregator) in customers {
        let usage = template_usage(&customer, options);
        let result = aggregator
            .finish()
            .map_err(RateError::from)
            .and_then(|metered| {
                let hash = input_hash(plan, &usage);
                price_usage(plan, &usage, &ctx, metered, None, Vec::new(), plugins, hash)
            });
        match result {
            Ok(invoice) => summary.invoices.push(invoice),
            Err(error) => summary.failed.push((customer.into_string(), error.to_string())),
        }
    }
    Ok(summary)
}

/// Total billed over all invoices (for summaries).
pub fn grand_total(invoices: &[Invoice]) -> Decimal {
    invoices.iter().map(|i| i.total.0).sum()
}
