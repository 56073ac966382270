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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;
use std::io::BufRead;

use ratecard_engine::meter::{Aggregator, Outcome, Router, Routing, Window};
use ratecard_engine::period::PeriodError;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{NotBilled, QuoteContext, RateError, context, input_hash, price_usage};
use ratecard_engine::usage::{Customer, Event, PeriodSelector, Usage};
use ratecard_engine::{Decimal, invoice::Invoice};

/// Lines read and parsed before their events are pushed, customer by customer.
const CHUNK_LINES: usize = 16_384;

/// Beyond this many worker threads a chunk's parts get too small to pay for the threads.
const MAX_THREADS: usize = 8;

/// Customer shards per worker thread.
const SHARDS_PER_THREAD: usize = 4;

pub use ratecard_engine::usage::CustomerSetup;

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
    /// Worker threads (0: one per core, at most 8). The result does not depend on it.
    pub threads: usize,
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
    /// (Not a `source`: the message says it, and `{:#}` would say it twice.)
    #[error("reading the events: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Rate(#[from] RateError),
}

impl From<std::io::Error> for StreamError {
    fn from(error: std::io::Error) -> Self {
        StreamError::Io(error)
    }
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
    /// The customer's events not billed, for their invoice's notes.
    not_billed: NotBilled,
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
            error: PeriodError::BeforeStart { .. },
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
                        error: source,
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
            not_billed: NotBilled::default(),
        })
    });
    match opened {
        Ok(account) => Slot::Open(Box::new(account)),
        Err(error) => Slot::Failed(error.to_string()),
    }
}

/// Every customer of one shard seen so far, numbered in order of appearance.
#[derive(Default)]
struct Accounts<'p> {
    by_id: FxHashMap<Box<str>, usize>,
    slots: Vec<(Box<str>, Slot<'p>)>,
}

impl<'p> Accounts<'p> {
    /// The number of `customer`'s account, opened with `open` if new.
    fn find_or_open(&mut self, customer: &str, open: impl FnOnce() -> Slot<'p>) -> usize {
        if let Some(&idx) = self.by_id.get(customer) {
            return idx;
        }
        let idx = self.slots.len();
        self.slots.push((customer.into(), open()));
        self.by_id.insert(customer.into(), idx);
        idx
    }
}

/// Groups a shard's events of one chunk by account with a counting sort, keeping each
/// account's events in file order. Its buffers are reused from chunk to chunk.
#[derive(Default)]
struct Grouping {
    /// The account of each event, as a number local to the chunk.
    local_of_event: Vec<u32>,
    /// A piece's customer number → local number + 1 (0: not seen yet in the piece).
    local_of_customer: Vec<u32>,
    /// Local number → account number.
    accounts: Vec<usize>,
    /// Account number → local number + 1 in the current chunk (0: not seen in it).
    local_of_account: Vec<u32>,
    /// Start of each local account's run, plus the end.
    starts: Vec<usize>,
    /// The events in grouped order, as (piece, index in the piece): the events themselves stay
    /// where they were parsed.
    order: Vec<(u32, u32)>,
}

impl Grouping {
    /// Groups the events of `pieces`, given by their customer numbers in their piece's
    /// `customers` (so a piece's customer is looked up once, not once per event).
    fn group<'e>(
        &mut self,
        pieces: impl Iterator<Item = (&'e [Cow<'e, str>], impl Iterator<Item = u32>)> + Clone,
        mut account_of: impl FnMut(&str) -> usize,
    ) {
        for &account in &self.accounts {
            self.local_of_account[account] = 0;
        }
        self.accounts.clear();
        self.local_of_event.clear();
        for (customers, numbers) in pieces.clone() {
            self.local_of_customer.clear();
            self.local_of_customer.resize(customers.len(), 0);
            for number in numbers {
                let number = number as usize;
                if self.local_of_customer[number] == 0 {
                    let account = account_of(&customers[number]);
                    if self.local_of_account.len() <= account {
                        self.local_of_account.resize(account + 1, 0);
                    }
                    if self.local_of_account[account] == 0 {
                        self.accounts.push(account);
                        self.local_of_account[account] = self.accounts.len() as u32;
                    }
                    self.local_of_customer[number] = self.local_of_account[account];
                }
                self.local_of_event.push(self.local_of_customer[number] - 1);
            }
        }
        self.starts.clear();
        self.starts.resize(self.accounts.len() + 1, 0);
        for &local in &self.local_of_event {
            self.starts[local as usize + 1] += 1;
        }
        for i in 1..self.starts.len() {
            self.starts[i] += self.starts[i - 1];
        }
        self.order.clear();
        self.order.resize(self.local_of_event.len(), (0, 0));
        let mut next = self.starts.clone();
        let mut locals = self.local_of_event.iter();
        for (piece, (_, numbers)) in pieces.enumerate() {
            for (idx, _) in numbers.enumerate() {
                let Some(&local) = locals.next() else { break };
                let at = &mut next[local as usize];
                self.order[*at] = (piece as u32, idx as u32);
                *at += 1;
            }
        }
    }

    /// Each account of the chunk with its events' places, in file order.
    fn runs(&self) -> impl Iterator<Item = (usize, &[(u32, u32)])> + '_ {
        self.accounts.iter().enumerate().map(|(local, &account)| {
            (
                account,
                &self.order[self.starts[local]..self.starts[local + 1]],
            )
        })
    }
}

/// A line of a chunk: where it starts and ends (without its line break), and its 1-based number.
type Span = (usize, usize, u64);

/// A parsed event.
struct Item<'c> {
    line: u64,
    /// The number of its customer in its part's [`Parsed::customers`].
    customer: u32,
    routing: Routing,
    event: Event<'c>,
}

/// The events of one part of a chunk, parsed and split by shard.
#[derive(Default)]
struct Parsed<'c> {
    /// Per shard, in file order.
    by_shard: Vec<Vec<Item<'c>>>,
    /// The part's customers, in order of appearance: each is compared while its line is still
    /// in cache, and the shards then look it up once per part instead of once per event.
    customers: Vec<Cow<'c, str>>,
    errors: Vec<LineError>,
}

fn parse_lines<'c>(
    chunk: &'c [u8],
    spans: &[Span],
    router: &Router<'_>,
    n_shards: usize,
) -> Parsed<'c> {
    let mut parsed = Parsed {
        by_shard: (0..n_shards)
            .map(|_| Vec::with_capacity(spans.len() / n_shards + spans.len() / 8))
            .collect(),
        customers: Vec::new(),
        errors: Vec::new(),
    };
    let mut numbers: FxHashMap<Cow<'c, str>, u32> = FxHashMap::default();
    for &(start, end, line) in spans {
        match Event::from_json_line(&chunk[start..end]) {
            Ok(event) if event.customer.is_empty() => {
                parsed.errors.push(LineError {
                    line,
                    message: format!("event `{}` has no `customer`", event.id),
                });
            }
            Ok(event) => {
                let shard = shard_of(&event.customer, n_shards);
                let routing = router.route(&event);
                let customer = match numbers.get(event.customer.as_ref()) {
                    Some(&number) => number,
                    None => {
                        let number = parsed.customers.len() as u32;
                        parsed.customers.push(event.customer.clone());
                        numbers.insert(event.customer.clone(), number);
                        number
                    }
                };
                parsed.by_shard[shard].push(Item {
                    line,
                    customer,
                    routing,
                    event,
                });
            }
            Err(error) => parsed.errors.push(LineError {
                line,
                message: format!("not a valid event: {error}"),
            }),
        }
    }
    parsed
}

/// The shard owning a customer. Bits 32.. of the hash: the account map uses the low bits.
fn shard_of(customer: &str, n_shards: usize) -> usize {
    if n_shards <= 1 {
        return 0;
    }
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(customer.as_bytes());
    ((hasher.finish() >> 32) % n_shards as u64) as usize
}

/// One worker's customers: each customer belongs to exactly one shard, so shards aggregate in
/// parallel without sharing anything, and a customer's events are pushed in file order.
#[derive(Default)]
struct Shard<'p> {
    accounts: Accounts<'p>,
    grouping: Grouping,
    n_counted: u64,
    n_skipped: u64,
    errors: Vec<LineError>,
}

impl<'p> Shard<'p> {
    /// Pushes this shard's events of a chunk, given in file order in one or more pieces, one
    /// per part of the chunk (`customers`: each part's customers).
    fn push(
        &mut self,
        pieces: Vec<Vec<Item<'_>>>,
        customers: &[Vec<Cow<'_, str>>],
        open: impl Fn(&str) -> Slot<'p>,
    ) {
        let Shard {
            accounts, grouping, ..
        } = self;
        grouping.group(
            pieces.iter().zip(customers).map(|(piece, customers)| {
                (customers.as_slice(), piece.iter().map(|item| item.customer))
            }),
            |customer| accounts.find_or_open(customer, || open(customer)),
        );
        let item = |&(piece, idx): &(u32, u32)| &pieces[piece as usize][idx as usize];
        for (account, run) in grouping.runs() {
            let slot = &mut accounts.slots[account].1;
            let Slot::Open(account) = slot else {
                self.n_skipped += run.len() as u64;
                continue;
            };
            // First touch what each push will need, so that the cache misses overlap.
            for item in run.iter().map(item) {
                account.aggregator.warm(&item.event, &item.routing);
            }
            for Item {
                line,
                routing,
                event,
                ..
            } in run.iter().map(item)
            {
                match account.aggregator.push_routed(event, routing) {
                    Ok(Outcome::Counted) => self.n_counted += 1,
                    Ok(outcome) => {
                        self.n_skipped += 1;
                        account.not_billed.record(outcome);
                    }
                    Err(error) => {
                        account
                            .not_billed
                            .reject(format_args!("line {line}"), &error);
                        self.errors.push(LineError {
                            line: *line,
                            message: error.to_string(),
                        });
                    }
                }
            }
        }
    }
}

/// Reads an NDJSON stream a chunk of lines at a time.
struct Lines<R> {
    reader: R,
    n_lines: u64,
    n_bytes: u64,
    at_end: bool,
    max_lines: usize,
    /// Bytes read at the last progress report.
    reported: u64,
    /// The start of a line read with the previous chunk, whose end was not read yet.
    carry: Vec<u8>,
}

/// Bytes read per chunk (when not `--strict`): about 16,000 typical event lines.
const CHUNK_BYTES: usize = 2 << 20;

impl<R: BufRead> Lines<R> {
    /// Calls `progress` with the bytes read, every 64 KiB or so.
    fn report(&mut self, progress: &mut impl FnMut(u64)) {
        if self.n_bytes - self.reported >= 1 << 16 {
            progress(self.n_bytes);
            self.reported = self.n_bytes;
        }
    }

    /// Replaces `chunk` with the next lines (at most `max_lines`) and `spans` with where each
    /// non-blank one is, without its line break, and its 1-based number.
    fn read(&mut self, chunk: &mut Vec<u8>, spans: &mut Vec<Span>) -> std::io::Result<()> {
        if self.max_lines >= CHUNK_LINES {
            return self.read_block(chunk, spans);
        }
        chunk.clear();
        spans.clear();
        let mut n_read_lines = 0;
        while !self.at_end && n_read_lines < self.max_lines {
            let start = chunk.len();
            let n_read = self.reader.read_until(b'\n', chunk)?;
            if n_read == 0 {
                self.at_end = true;
                break;
            }
            self.n_bytes += n_read as u64;
            self.n_lines += 1;
            n_read_lines += 1;
            let end = start + chunk[start..].trim_ascii_end().len();
            if end > start {
                spans.push((start, end, self.n_lines));
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Lines<R> {
    /// [`Lines::read`] a block at a time: about [`CHUNK_BYTES`] read straight into `chunk`
    /// (no copy through the reader's buffer, no call per line), cut after its last line break;
    /// the rest starts the next chunk.
    fn read_block(&mut self, chunk: &mut Vec<u8>, spans: &mut Vec<Span>) -> std::io::Result<()> {
        chunk.clear();
        spans.clear();
        if self.at_end {
            return Ok(());
        }
        chunk.append(&mut self.carry);
        // Until the chunk holds a line break past the target size, or the stream ends.
        let mut searched = 0;
        let cut = loop {
            if chunk.len() >= CHUNK_BYTES
                && let Some(at) = memchr::memrchr(b'\n', &chunk[searched..])
            {
                break Some(searched + at + 1);
            }
            searched = chunk.len();
            let start = chunk.len();
            let want = CHUNK_BYTES.max(start / 2) + (1 << 16);
            chunk.resize(start + want, 0);
            let n_read = loop {
                match self.reader.read(&mut chunk[start..]) {
                    Ok(n) => break n,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        chunk.truncate(start);
                        return Err(error);
                    }
                }
            };
            chunk.truncate(start + n_read);
            self.n_bytes += n_read as u64;
            if n_read == 0 {
                self.at_end = true;
                break None;
            }
        };
        if let Some(cut) = cut {
            self.carry.extend_from_slice(&chunk[cut..]);
            chunk.truncate(cut);
        }
        let mut start = 0;
        while start < chunk.len() {
            let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |at| start + at);
            self.n_lines += 1;
            let line_end = start + chunk[start..end].trim_ascii_end().len();
            if line_end > start {
                spans.push((start, line_end, self.n_lines));
            }
            start = end + 1;
        }
        Ok(())
    }
}

/// A part of a chunk to parse: its index in the chunk, the chunk and the part's lines.
type ParseTask<'c> = (usize, &'c [u8], &'c [Span]);

/// The events of one chunk, parsed in parts (in file order), with the chunk's parse errors.
type ParsedChunk<'c> = Vec<Parsed<'c>>;

/// A parsed chunk taken apart: its parse errors, each shard's events part by part (so in file
/// order), and each part's customers.
struct SplitChunk<'c> {
    errors: Vec<LineError>,
    per_shard: Vec<Vec<Vec<Item<'c>>>>,
    customers: Vec<Vec<Cow<'c, str>>>,
}

fn split_by_shard(parts: ParsedChunk<'_>, n_shards: usize) -> SplitChunk<'_> {
    let mut split = SplitChunk {
        errors: Vec::new(),
        per_shard: (0..n_shards).map(|_| Vec::new()).collect(),
        customers: Vec::with_capacity(parts.len()),
    };
    for part in parts {
        split.errors.extend(part.errors);
        split.customers.push(part.customers);
        for (mine, theirs) in split.per_shard.iter_mut().zip(part.by_shard) {
            mine.push(theirs);
        }
    }
    split
}

/// A chunk's errors: its parse errors and the shards' push errors, in line order.
fn chunk_errors(mut errors: Vec<LineError>, shards: &mut [Shard<'_>]) -> Vec<LineError> {
    for shard in shards {
        errors.append(&mut shard.errors);
    }
    errors.sort_by_key(|e| e.line);
    errors
}

/// The one-thread loop (also `--strict`'s, which reads one line per chunk and stops at the
/// first error): read a chunk, parse it, push it.
fn sequential<'p, R: BufRead>(
    lines: &mut Lines<R>,
    shard: &mut Shard<'p>,
    router: &Router<'_>,
    strict: bool,
    open_account: impl Fn(&str) -> Slot<'p> + Copy,
    summary: &mut RateSummary,
    progress: &mut impl FnMut(u64),
) -> Result<(), StreamError> {
    let (mut chunk, mut spans) = (Vec::new(), Vec::new());
    loop {
        lines.read(&mut chunk, &mut spans)?;
        // A chunk of blank lines has no spans: stop only at the end of the stream.
        if spans.is_empty() && lines.at_end {
            return Ok(());
        }
        lines.report(progress);
        let parsed = vec![parse_lines(&chunk, &spans, router, 1)];
        let SplitChunk {
            errors,
            mut per_shard,
            customers,
        } = split_by_shard(parsed, 1);
        if !strict || errors.is_empty() {
            shard.push(
                per_shard.pop().unwrap_or_default(),
                &customers,
                open_account,
            );
        }
        let mut errors = chunk_errors(errors, std::slice::from_mut(shard));
        if strict && !errors.is_empty() {
            errors.truncate(1);
            summary.errors.extend(errors);
            summary.stopped = true;
            return Ok(());
        }
        summary.errors.extend(errors);
    }
}

/// The multi-threaded loop, pipelined: while the workers push the shards of one chunk, this
/// thread reads the next chunk and hands its parts to the workers to parse, so a chunk costs one
/// join instead of two and no core waits for the reading. Unrolled by two so each chunk buffer
/// is borrowed by its parsed events only until they are pushed.
fn pipelined<'p, R: BufRead>(
    lines: &mut Lines<R>,
    shards: &mut [Shard<'p>],
    router: &Router<'_>,
    n_threads: usize,
    open_account: impl Fn(&str) -> Slot<'p> + Copy + Send + Sync,
    summary: &mut RateSummary,
    progress: &mut impl FnMut(u64),
) -> Result<(), StreamError> {
    let (mut chunk_a, mut spans_a) = (Vec::new(), Vec::new());
    let (mut chunk_b, mut spans_b) = (Vec::new(), Vec::new());
    let (mut parsed, _) = step(
        Vec::new(),
        shards,
        lines,
        (&mut chunk_a, &mut spans_a),
        router,
        n_threads,
        open_account,
    )?;
    loop {
        lines.report(progress);
        let (next, errors) = step(
            parsed,
            shards,
            lines,
            (&mut chunk_b, &mut spans_b),
            router,
            n_threads,
            open_account,
        )?;
        summary.errors.extend(errors);
        // A chunk of blank lines has no parts either: stop only at the end of the stream.
        if next.is_empty() && lines.at_end {
            return Ok(());
        }
        lines.report(progress);
        let (next_next, errors) = step(
            next,
            shards,
            lines,
            (&mut chunk_a, &mut spans_a),
            router,
            n_threads,
            open_account,
        )?;
        summary.errors.extend(errors);
        if next_next.is_empty() && lines.at_end {
            return Ok(());
        }
        parsed = next_next;
    }
}

/// One step of [`pipelined`]: the workers push `current` (a parsed chunk) while this thread
/// reads the next chunk into `next`, then everyone parses the next chunk. Returns the next
/// chunk's parts (empty at the end of the stream) and the errors of `current`, by line.
fn step<'p, 'n, R: BufRead>(
    current: ParsedChunk<'_>,
    shards: &mut [Shard<'p>],
    lines: &mut Lines<R>,
    (next, next_spans): (&'n mut Vec<u8>, &'n mut Vec<Span>),
    router: &Router<'_>,
    n_threads: usize,
    open_account: impl Fn(&str) -> Slot<'p> + Copy + Send + Sync,
) -> Result<(ParsedChunk<'n>, Vec<LineError>), StreamError> {
    let n_shards = shards.len();
    let SplitChunk {
        errors,
        per_shard,
        customers,
    } = split_by_shard(current, n_shards);
    let pushes = Mutex::new(shards.iter_mut().zip(per_shard).collect::<Vec<_>>());
    // Parts of the next chunk to parse, with their index; posted once the chunk is read.
    let parses: Mutex<Vec<ParseTask<'n>>> = Mutex::new(Vec::new());
    let parsed: Mutex<Vec<(usize, Parsed<'n>)>> = Mutex::new(Vec::new());
    let posted = AtomicBool::new(false);
    let work = || {
        loop {
            let push = pushes.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some((shard, items)) = push {
                shard.push(items, &customers, open_account);
                continue;
            }
            let is_posted = posted.load(Ordering::Acquire);
            let parse = parses.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some((idx, chunk, piece)) = parse {
                let part = parse_lines(chunk, piece, router, n_shards);
                parsed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((idx, part));
            } else if is_posted {
                break;
            } else {
                std::thread::yield_now();
            }
        }
    };
    let read = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_threads).map(|_| scope.spawn(work)).collect();
        let read = lines.read(next, next_spans);
        if read.is_ok() {
            let (chunk, spans) = (&next[..], &next_spans[..]);
            let part_len = spans.len().div_ceil(n_threads * 2).max(1);
            parses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(
                    spans
                        .chunks(part_len)
                        .enumerate()
                        .map(|(idx, piece)| (idx, chunk, piece)),
                );
        }
        posted.store(true, Ordering::Release);
        work();
        for handle in handles {
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        read
    });
    read?;
    let errors = chunk_errors(errors, shards);
    let mut next = parsed.into_inner().unwrap_or_else(PoisonError::into_inner);
    next.sort_by_key(|(idx, _)| *idx);
    Ok((next.into_iter().map(|(_, part)| part).collect(), errors))
}

/// Rates every customer's events in `reader` (NDJSON) for one period. `progress` is called with
/// the bytes read so far, every 64 KiB or so.
///
/// Lines are read in chunks. Each chunk is parsed in parts on the worker threads; customers are
/// split into shards (4 per worker) and the workers push a shard's events customer by customer
/// (counting sort, file order kept within a customer): a customer's aggregator and id index
/// stay hot in cache for a run of events instead of being touched once per line at random, and
/// no state is shared between shards. With several threads the loop is [`pipelined`]. The result does not depend on the number of threads: a customer's
/// events are pushed in file order whatever the shard, invoices are sorted by customer and
/// errors by line. `--strict` reads one line at a time, on one thread, so it stops at the first
/// bad line.
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
    let n_threads = if options.strict {
        1
    } else if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        options.threads.min(MAX_THREADS)
    };
    // More shards than threads, taken from a queue, so a thread that finishes its shards early
    // (a shard with fewer busy customers) takes another instead of waiting.
    let n_shards = if n_threads == 1 {
        1
    } else {
        n_threads * SHARDS_PER_THREAD
    };
    let mut shards: Vec<Shard<'p>> = (0..n_shards).map(|_| Shard::default()).collect();
    let open_account = |customer: &str| open(plan, customer, options, plugins);
    let router = Router::new(&plan.metrics);
    let mut summary = RateSummary::default();
    let mut lines = Lines {
        reader,
        n_lines: 0,
        n_bytes: 0,
        at_end: false,
        max_lines: if options.strict { 1 } else { CHUNK_LINES },
        reported: 0,
        carry: Vec::new(),
    };
    // Lines are read as bytes, not text: a line that is not UTF-8 is one bad line (serde_json
    // checks the text of each line as it parses it), not the end of the run.
    if n_threads == 1 {
        sequential(
            &mut lines,
            &mut shards[0],
            &router,
            options.strict,
            open_account,
            &mut summary,
            &mut progress,
        )?;
    } else {
        pipelined(
            &mut lines,
            &mut shards,
            &router,
            n_threads,
            open_account,
            &mut summary,
            &mut progress,
        )?;
    }
    summary.n_lines = lines.n_lines;
    let n_bytes = lines.n_bytes;
    progress(n_bytes);
    let mut customers = Vec::new();
    for shard in shards {
        summary.n_counted += shard.n_counted;
        summary.n_skipped += shard.n_skipped;
        customers.extend(shard.accounts.slots);
    }
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    // Described customers without events still owe their flat fees.
    let n_seen = customers.len();
    for customer in options.customers.keys() {
        let seen = customers[..n_seen].binary_search_by(|(id, _)| id.as_ref().cmp(customer));
        if seen.is_err() {
            customers.push((customer.as_str().into(), open_account(customer)));
        }
    }
    // Invoices are priced on the workers too (a plan with many charges costs a fraction of a
    // millisecond per invoice), then reported in customer order.
    let n_workers = n_threads.min(customers.len()).max(1);
    let per_worker = customers.len().div_ceil(n_workers).max(1);
    let mut finished: Vec<(Box<str>, Finished)> = Vec::with_capacity(customers.len());
    if n_workers == 1 {
        finished.extend(
            customers
                .into_iter()
                .map(|(customer, slot)| (customer, finish(plan, slot, plugins))),
        );
    } else {
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(n_workers);
            while !customers.is_empty() {
                let batch = customers.split_off(customers.len().saturating_sub(per_worker));
                handles.push(scope.spawn(move || {
                    batch
                        .into_iter()
                        .map(|(customer, slot)| (customer, finish(plan, slot, plugins)))
                        .collect::<Vec<_>>()
                }));
            }
            for handle in handles {
                finished.extend(
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
        });
    }
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    for (customer, result) in finished {
        match result {
            Finished::Invoice(invoice) => summary.invoices.push(*invoice),
            Finished::Failed(reason) => summary.failed.push((customer.into_string(), reason)),
            Finished::NotStarted => summary.not_started.push(customer.into_string()),
        }
    }
    Ok(summary)
}

/// What became of one customer's rating.
enum Finished {
    Invoice(Box<Invoice>),
    Failed(String),
    NotStarted,
}

fn finish(plan: &Plan, slot: Slot<'_>, plugins: &dyn PluginHost) -> Finished {
    let account = match slot {
        Slot::Open(account) => account,
        Slot::Failed(reason) => return Finished::Failed(reason),
        Slot::NotStarted => return Finished::NotStarted,
    };
    let Account {
        usage,
        ctx,
        aggregator,
        not_billed,
    } = *account;
    let result = aggregator
        .finish()
        .map_err(RateError::from)
        .and_then(|metered| {
            let hash = input_hash(plan, &usage);
            let mut notes = Vec::new();
            not_billed.write_notes(&mut notes, true);
            price_usage(plan, &usage, &ctx, metered, None, notes, plugins, hash)
        });
    match result {
        Ok(invoice) => Finished::Invoice(Box::new(invoice)),
        Err(error) => Finished::Failed(error.to_string()),
    }
}
