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

use ratecard_engine::invoice::Invoice;
use ratecard_engine::meter::{Outcome, Router, Routing};
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{PreparedPlan, RateError};
use ratecard_engine::rater::{Opened, PeriodRater};
use ratecard_engine::usage::Event;

/// Lines read and parsed before their events are pushed, customer by customer.
const CHUNK_LINES: usize = 16_384;

/// Beyond this many worker threads a chunk's parts get too small to pay for the threads.
const MAX_THREADS: usize = 8;

/// Customer shards per worker thread.
const SHARDS_PER_THREAD: usize = 4;

pub use ratecard_engine::usage::CustomerSetup;

/// What to rate: which period, for whom, how.
#[derive(Clone, Debug, Default)]
pub struct RateRequest {
    /// The period: a date or date-time inside it (`"2026-11-15"`), or a month (`"2026-11"`),
    /// read in each customer's timezone.
    pub period: String,
    /// IANA timezone of customers without their own (default UTC).
    pub default_timezone: Option<String>,
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

/// One customer's result, handed to the sink in customer order.
#[derive(Debug)]
pub struct Rated {
    pub customer: String,
    pub outcome: RatedOutcome,
}

/// What became of one customer's period.
#[derive(Debug)]
pub enum RatedOutcome {
    Invoice(Box<Invoice>),
    /// Their subscription starts after the period: nothing to bill (their events are skipped).
    NotStarted,
    /// Their subscription ended before the period: nothing to bill (their events are skipped).
    Ended,
    /// Their invoice could not be computed (a bad timezone or subscription in their setup, a
    /// plugin failing, an overflow); their events are skipped.
    Failed(RateError),
}

/// What a run read, beyond the customers' results.
#[derive(Debug, Default)]
pub struct RateSummary {
    pub n_lines: u64,
    pub n_counted: u64,
    /// Events outside the period, of no metric, filtered out or duplicates.
    pub n_skipped: u64,
    pub errors: Vec<LineError>,
    /// True when `strict` stopped the run at the first error.
    pub stopped: bool,
}

/// Every customer's result of a run, for callers that want them all at once (tests, small
/// runs); `ratecard rate` writes each invoice as it comes instead.
#[derive(Debug, Default)]
pub struct Collected {
    /// One invoice per customer, sorted by customer id.
    pub invoices: Vec<Invoice>,
    pub failed: Vec<(String, RateError)>,
    pub not_started: Vec<String>,
    pub ended: Vec<String>,
}

impl Collected {
    pub fn push(&mut self, rated: Rated) {
        match rated.outcome {
            RatedOutcome::Invoice(invoice) => self.invoices.push(*invoice),
            RatedOutcome::NotStarted => self.not_started.push(rated.customer),
            RatedOutcome::Ended => self.ended.push(rated.customer),
            RatedOutcome::Failed(error) => self.failed.push((rated.customer, error)),
        }
    }
}

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// (Not a `source`: the message says it, and `{:#}` would say it twice.)
    #[error("reading the events: {0}")]
    Io(std::io::Error),
    /// The request's period or default timezone is wrong (its path is `$.period` or
    /// `$.customer.timezone`: the request's `period` and `default_timezone`).
    #[error(transparent)]
    Request(RateError),
}

impl From<std::io::Error> for StreamError {
    fn from(error: std::io::Error) -> Self {
        StreamError::Io(error)
    }
}

/// Normalizes period text: a month `2026-11` means its first day.
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

/// A customer of the run: being rated, or known not to be.
enum Slot<'p> {
    Open(Box<PeriodRater<'p>>),
    Failed(RateError),
    /// The subscription starts after the period: nothing to bill.
    NotStarted,
    /// The subscription ended before the period: nothing to bill.
    Ended,
}

/// Opens `customer_id`'s period (see [`PeriodRater::open_containing`]).
fn open<'p>(
    prepared: &'p PreparedPlan<'p>,
    customer_id: &str,
    request: &RateRequest,
    containing: &str,
    plugins: &'p dyn PluginHost,
) -> Slot<'p> {
    let no_setup = CustomerSetup::default();
    let setup = request.customers.get(customer_id).unwrap_or(&no_setup);
    let opened = PeriodRater::open_containing(
        prepared,
        customer_id,
        setup,
        containing,
        request.default_timezone.as_deref(),
        plugins,
    );
    match opened {
        Ok(Opened::Rating(rater)) => Slot::Open(rater),
        Ok(Opened::NotStarted) => Slot::NotStarted,
        Ok(Opened::Ended) => Slot::Ended,
        Err(error) => Slot::Failed(error),
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
    router: &Router,
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
                account.warm(&item.event, &item.routing);
            }
            for Item {
                line,
                routing,
                event,
                ..
            } in run.iter().map(item)
            {
                // Grouped by customer above: each event is this account's.
                match account.push_own(event, routing, format_args!("line {line}")) {
                    Ok(Outcome::Counted) => self.n_counted += 1,
                    Ok(_) => self.n_skipped += 1,
                    Err(error) => {
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

    /// Reads the next lines (at most `max_lines`) into `chunk` and replaces `spans` with where
    /// each non-blank one is, without its line break, and its 1-based number. Only the spans'
    /// bytes are the lines: `chunk` may hold stale bytes past them.
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
    /// the rest starts the next chunk. `chunk` keeps its length from one chunk to the next (the
    /// bytes past the last span are stale and never read), so its buffer is zeroed once when it
    /// grows instead of before every read.
    fn read_block(&mut self, chunk: &mut Vec<u8>, spans: &mut Vec<Span>) -> std::io::Result<()> {
        spans.clear();
        if self.at_end {
            return Ok(());
        }
        let mut filled = self.carry.len();
        if chunk.len() < filled {
            chunk.resize(filled, 0);
        }
        chunk[..filled].copy_from_slice(&self.carry);
        self.carry.clear();
        // Until the chunk holds a line break past the target size, or the stream ends.
        let mut searched = 0;
        let cut = loop {
            if filled >= CHUNK_BYTES
                && let Some(at) = memchr::memrchr(b'\n', &chunk[searched..filled])
            {
                break searched + at + 1;
            }
            searched = filled;
            let want = CHUNK_BYTES.max(filled / 2) + (1 << 16);
            if chunk.len() < filled + want {
                chunk.resize(filled + want, 0);
            }
            let n_read = loop {
                match self.reader.read(&mut chunk[filled..filled + want]) {
                    Ok(n) => break n,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            };
            filled += n_read;
            self.n_bytes += n_read as u64;
            if n_read == 0 {
                self.at_end = true;
                break filled;
            }
        };
        self.carry.extend_from_slice(&chunk[cut..filled]);
        let chunk = &chunk[..cut];
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
    router: &Router,
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
    router: &Router,
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
    router: &Router,
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

/// Rates every customer's events in `reader` (NDJSON) for one period, handing each customer's
/// result to `sink` in customer order once the stream is read (invoices are priced in batches,
/// so only a batch of them is held at once). `progress` is called with the bytes read so far,
/// every 64 KiB or so.
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
    prepared: &'p PreparedPlan<'p>,
    reader: impl BufRead,
    request: &RateRequest,
    plugins: &'p dyn PluginHost,
    mut progress: impl FnMut(u64),
    mut sink: impl FnMut(Rated),
) -> Result<RateSummary, StreamError> {
    let containing = period_text(&request.period);
    // Check the period and timezone once up front, so a bad one fails the run instead of every
    // customer.
    match open(
        prepared,
        "",
        &RateRequest {
            customers: BTreeMap::new(),
            ..request.clone()
        },
        &containing,
        plugins,
    ) {
        Slot::Failed(error) => return Err(StreamError::Request(error)),
        Slot::Open(_) | Slot::NotStarted | Slot::Ended => {}
    }
    let n_threads = if request.strict {
        1
    } else if request.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    } else {
        request.threads.min(MAX_THREADS)
    };
    // More shards than threads, taken from a queue, so a thread that finishes its shards early
    // (a shard with fewer busy customers) takes another instead of waiting.
    let n_shards = if n_threads == 1 {
        1
    } else {
        n_threads * SHARDS_PER_THREAD
    };
    let mut shards: Vec<Shard<'p>> = (0..n_shards).map(|_| Shard::default()).collect();
    let open_account = |customer: &str| open(prepared, customer, request, &containing, plugins);
    let router = prepared.router();
    let mut summary = RateSummary::default();
    let mut lines = Lines {
        reader,
        n_lines: 0,
        n_bytes: 0,
        at_end: false,
        max_lines: if request.strict { 1 } else { CHUNK_LINES },
        reported: 0,
        carry: Vec::new(),
    };
    // Lines are read as bytes, not text: a line that is not UTF-8 is one bad line (serde_json
    // checks the text of each line as it parses it), not the end of the run.
    if n_threads == 1 {
        sequential(
            &mut lines,
            &mut shards[0],
            router,
            request.strict,
            open_account,
            &mut summary,
            &mut progress,
        )?;
    } else {
        pipelined(
            &mut lines,
            &mut shards,
            router,
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
    for customer in request.customers.keys() {
        let seen = customers[..n_seen].binary_search_by(|(id, _)| id.as_ref().cmp(customer));
        if seen.is_err() {
            customers.push((customer.as_str().into(), open_account(customer)));
        }
    }
    customers.sort_by(|a, b| a.0.cmp(&b.0));
    finish_all(customers, n_threads, &mut sink);
    Ok(summary)
}

/// Invoices per batch of customers: priced in parallel, then handed over in order, so at most
/// this many invoices are held at once.
const FINISH_BATCH: usize = 512;

/// Finishes every customer (sorted by id) into the sink, in order. Invoices are priced on the
/// workers too (a plan with many charges costs a fraction of a millisecond per invoice).
fn finish_all(
    customers: Vec<(Box<str>, Slot<'_>)>,
    n_threads: usize,
    sink: &mut impl FnMut(Rated),
) {
    let mut customers = customers.into_iter();
    loop {
        let batch: Vec<_> = customers.by_ref().take(FINISH_BATCH).collect();
        if batch.is_empty() {
            return;
        }
        let n_workers = n_threads.min(batch.len()).max(1);
        let finished: Vec<Rated> = if n_workers == 1 {
            batch.into_iter().map(finish).collect()
        } else {
            let per_worker = batch.len().div_ceil(n_workers);
            let mut parts = Vec::with_capacity(n_workers);
            let mut batch = batch.into_iter();
            loop {
                let part: Vec<_> = batch.by_ref().take(per_worker).collect();
                if part.is_empty() {
                    break;
                }
                parts.push(part);
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> = parts
                    .into_iter()
                    .map(|part| {
                        scope.spawn(move || part.into_iter().map(finish).collect::<Vec<_>>())
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|handle| {
                        handle
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        finished.into_iter().for_each(&mut *sink);
    }
}

fn finish((customer, slot): (Box<str>, Slot<'_>)) -> Rated {
    let outcome = match slot {
        Slot::Open(rater) => match rater.finish() {
            Ok(invoice) => RatedOutcome::Invoice(Box::new(invoice)),
            Err(error) => RatedOutcome::Failed(error),
        },
        Slot::Failed(error) => RatedOutcome::Failed(error),
        Slot::NotStarted => RatedOutcome::NotStarted,
        Slot::Ended => RatedOutcome::Ended,
    };
    Rated {
        customer: customer.into_string(),
        outcome,
    }
}
