//! Rating an NDJSON event stream: one invoice per customer for one period.
//!
//! Events are parsed one line at a time into borrowed [`Event`]s (no allocation for the usual
//! line) and pushed into one [`Aggregator`] per customer. A malformed line or a bad event is
//! reported with its line number and the run goes on (unless `strict`), so one bad line never
//! drops the good ones.
//!
//! Customers may be described in a setup file (`--customers`): timezone, subscription, credits,
//! attributes and carry-in levels per customer id. Each customer's period is then the one of
//! *their* calendar that contains the `--period` date, and a described customer without events
//! still gets an invoice (their flat fees are due).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use ratecard_engine::decimal::Dec;
use ratecard_engine::meter::{Aggregator, Outcome, Window};
use ratecard_engine::period::PeriodError;
use ratecard_engine::plan::{Credit, Plan};
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{QuoteContext, RateError, context, input_hash, price_usage};
use ratecard_engine::usage::{Customer, Event, PeriodSelector, Subscription, Usage};
use ratecard_engine::{Decimal, invoice::Invoice};
use serde::Deserialize;

/// Lines read and parsed before their events are pushed, customer by customer.
const CHUNK_LINES: usize = 16_384;

/// What is known of one customer beyond their events.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerSetup {
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub subscription: Option<Subscription>,
    #[serde(default)]
    pub credits: Vec<Credit>,
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub carry_in: BTreeMap<String, Dec>,
}

/// How to rate a stream.
#[derive(Clone, Debug, Default)]
pub struct RateOptions {
    /// The period: a date or date-time inside it (`"2026-11-15"`), or a month (`"2026-11"`).
    pub period: String,
    /// IANA timezone of customers without their own (default UTC).
    pub timezone: Option<String>,
    /// Stop at the first bad line instead of reporting it and going on.
    pub strict: bool,
    /// Per-customer setups by customer id.
    pub customers: BTreeMap<String, CustomerSetup>,
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
    /// Customers whose subscription starts after the period (their events are skipped).
    pub not_started: Vec<String>,
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
    let is_month = period.len() == 7
        && period.as_bytes()[4] == b'-'
        && period.chars().filter(|c| c.is_ascii_digit()).count() == 6;
    if is_month {
        format!("{period}-01")
    } else {
        period.to_owned()
    }
}

fn customer_usage(customer_id: &str, options: &RateOptions) -> Usage {
    let setup = options
        .customers
        .get(customer_id)
        .cloned()
        .unwrap_or_default();
    Usage {
        customer: Customer {
            id: customer_id.to_owned(),
            timezone: setup.timezone.or_else(|| options.timezone.clone()),
            attributes: setup.attributes,
        },
        subscription: setup.subscription,
        period: Some(PeriodSelector::Containing {
            containing: period_text(&options.period),
        }),
        quantities: Default::default(),
        events: Vec::new(),
        carry_in: setup.carry_in,
        credits: setup.credits,
        plan_change: None,
    }
}

/// One customer's rating in progress.
struct Account<'p> {
    usage: Usage,
    ctx: QuoteContext,
    aggregator: Aggregator<'p>,
}

/// A customer whose setup makes rating impossible (bad timezone, subscription starting after
/// the period): their events are skipped and the reason reported once.
enum Slot<'p> {
    Open(Box<Account<'p>>),
    Failed(String),
    /// The subscription starts after the period: nothing to bill.
    NotStarted,
}

fn open<'p>(
    plan: &'p Plan,
    customer_id: &str,
    options: &RateOptions,
    plugins: &'p dyn PluginHost,
) -> Slot<'p> {
    let mut usage = customer_usage(customer_id, options);
    let ctx = match context(plan, &usage) {
        // A subscription that starts inside the nominal cycle holding the date is rated for its
        // (shorter) first period; one that starts later has nothing to bill in this period.
        Err(RateError::Period {
            source: PeriodError::BeforeStart { .. },
            ..
        }) => {
            let mut first = usage.clone();
            first.period = Some(PeriodSelector::Index { index: 0 });
            match context(plan, &first) {
                Ok(ctx) => match ctx.calendar.parse_instant(&period_text(&options.period)) {
                    Ok(date) if ctx.period.cycle_start <= date => {
                        usage = first;
                        Ok(ctx)
                    }
                    Ok(_) => return Slot::NotStarted,
                    Err(source) => Err(RateError::Period {
                        path: "--period".to_owned(),
                        source,
                    }),
                },
                Err(error) => Err(error),
            }
        }
        other => other,
    };
    let opened = ctx.and_then(|ctx| {
        let window = Window {
            start: ctx.period.start,
            end: ctx.period.end,
        };
        let carry_in: BTreeMap<String, Decimal> = usage
            .carry_in
            .iter()
            .map(|(k, v)| (k.clone(), v.0))
            .collect();
        let aggregator = Aggregator::new(
            &plan.metrics,
            &plan.charges,
            window,
            ctx.billable_from,
            &carry_in,
            plugins,
        )?;
        Ok(Account {
            usage,
            ctx,
            aggregator,
        })
    });
    match opened {
        Ok(account) => Slot::Open(Box::new(account)),
        Err(error) => Slot::Failed(error.to_string()),
    }
}

/// Rates every customer's events in `reader` (NDJSON) for one period. `progress` is called with
/// the bytes read so far, every 64 KiB or so.
pub fn rate_stream<'p>(
    plan: &'p Plan,
    reader: impl BufRead,
    options: &RateOptions,
    plugins: &'p dyn PluginHost,
    mut progress: impl FnMut(u64),
) -> Result<RateSummary, StreamError> {
    let report = ratecard_engine::validate::validate_plan(plan);
    if !report.is_ok() {
        return Err(RateError::InvalidPlan(report.errors).into());
    }
    // Check the period once up front, so a bad `--period` fails the run instead of every customer.
    context(
        plan,
        &customer_usage(
            "",
            &RateOptions {
                customers: BTreeMap::new(),
                ..options.clone()
            },
        ),
    )?;
    let mut accounts: HashMap<Box<str>, Slot<'p>> = HashMap::new();
    let mut summary = RateSummary::default();
    let mut reader = reader;
    // Lines are read in chunks and, within a chunk, pushed customer by customer (keeping each
    // customer's order): a customer's aggregator and id index stay hot in cache for a run of
    // events instead of being touched once per line at random. Errors are reported in line
    // order. `--strict` pushes in line order so it stops at the first bad line.
    let chunk_lines = if options.strict { 1 } else { CHUNK_LINES };
    let mut chunk = String::new();
    let mut spans: Vec<(usize, usize, u64)> = Vec::with_capacity(chunk_lines);
    let (mut n_bytes, mut last_report) = (0u64, 0u64);
    let mut at_end = false;
    while !at_end && !summary.stopped {
        chunk.clear();
        spans.clear();
        while spans.len() < chunk_lines {
            let start = chunk.len();
            let n_read = reader.read_line(&mut chunk)?;
            if n_read == 0 {
                at_end = true;
                break;
            }
            n_bytes += n_read as u64;
            summary.n_lines += 1;
            let end = start + chunk[start..].trim_end().len();
            if end > start {
                spans.push((start, end, summary.n_lines));
            }
        }
        if n_bytes - last_report >= 1 << 16 {
            progress(n_bytes);
            last_report = n_bytes;
        }
        let mut errors = Vec::new();
        let mut events: Vec<(u64, Event<'_>)> = Vec::with_capacity(spans.len());
        for &(start, end, line) in &spans {
            match serde_json::from_str::<Event<'_>>(&chunk[start..end]) {
                Ok(event) if event.customer.is_empty() => {
                    errors.push(LineError {
                        line,
                        message: format!("event `{}` has no `customer`", event.id),
                    });
                }
                Ok(event) => events.push((line, event)),
                Err(error) => errors.push(LineError {
                    line,
                    message: format!("not a valid event: {error}"),
                }),
            }
        }
        if !options.strict {
            // Stable: each customer's events keep their file order.
            events.sort_by(|a, b| a.1.customer.cmp(&b.1.customer));
        }
        let mut current: Option<(&str, &mut Slot<'p>)> = None;
        for (line, event) in &events {
            if options.strict && !errors.is_empty() {
                break;
            }
            let slot = match current.take() {
                Some((customer, slot)) if customer == event.customer.as_ref() => slot,
                _ => accounts
                    .entry(event.customer.as_ref().into())
                    .or_insert_with(|| open(plan, &event.customer, options, plugins)),
            };
            match &mut *slot {
                Slot::Open(account) => match account.aggregator.push(event) {
                    Ok(Outcome::Counted) => summary.n_counted += 1,
                    Ok(_) => summary.n_skipped += 1,
                    Err(error) => errors.push(LineError {
                        line: *line,
                        message: error.to_string(),
                    }),
                },
                Slot::Failed(_) | Slot::NotStarted => summary.n_skipped += 1,
            }
            current = Some((event.customer.as_ref(), slot));
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            if options.strict {
                errors.truncate(1);
                summary.stopped = true;
            }
            summary.errors.extend(errors);
        }
    }
    progress(n_bytes);
    // Described customers without events still owe their flat fees.
    for customer in options.customers.keys() {
        if !accounts.contains_key(customer.as_str()) {
            let slot = open(plan, customer, options, plugins);
            accounts.insert(customer.as_str().into(), slot);
        }
    }
    let mut customers: Vec<(Box<str>, Slot<'p>)> = accounts.into_iter().collect();
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    for (customer, slot) in customers {
        let account = match slot {
            Slot::Open(account) => account,
            Slot::Failed(reason) => {
                summary.failed.push((customer.into_string(), reason));
                continue;
            }
            Slot::NotStarted => {
                summary.not_started.push(customer.into_string());
                continue;
            }
        };
        let Account {
            usage,
            ctx,
            aggregator,
        } = *account;
        let result = aggregator
            .finish()
            .map_err(RateError::from)
            .and_then(|metered| {
                let hash = input_hash(plan, &usage);
                price_usage(plan, &usage, &ctx, metered, None, Vec::new(), plugins, hash)
            });
        match result {
            Ok(invoice) => summary.invoices.push(invoice),
            Err(error) => summary
                .failed
                .push((customer.into_string(), error.to_string())),
        }
    }
    Ok(summary)
}
