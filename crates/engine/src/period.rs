//! Billing periods: where a subscription's periods start and end in the customer's timezone, and
//! what share of a period a stretch of time is worth (proration).
//!
//! Everything here is computed from data: a [`Calendar`] holds the customer's IANA timezone, the
//! plan's [`Interval`], the subscription start and the billing anchor. Nothing reads a clock.
//!
//! # Contract
//!
//! **Text forms.** A start, an anchor or any instant given as text ([`Calendar::parse_instant`])
//! is one of:
//! - a local date `"2026-01-31"`: midnight at the start of that day in the calendar's timezone;
//! - a local date-time `"2026-01-31T09:30:00"`, optionally with a fraction of a second
//!   (`"…:00.250"`, up to 9 digits), a wall time in the calendar's timezone;
//! - an RFC 3339 instant with `Z` or an offset (`"2026-01-31T09:30:00-05:00"`), independent of
//!   the timezone.
//!
//! Instants are Unix milliseconds ([`Timestamp`]); sub-millisecond fractions are floored.
//! Anything else is [`PeriodError::BadInstant`].
//!
//! **Timezone.** An IANA name known to `chrono-tz` (`"Europe/Paris"`, `"Pacific/Tongatapu"`,
//! `"UTC"`), matched exactly (case-sensitive); otherwise [`PeriodError::UnknownTimezone`].
//!
//! **Local time to instant.** Wall times are turned into instants with two rules:
//! - a wall time that does not exist (a DST gap, or the day Samoa skipped in 2011) is shifted
//!   forward by the length of the gap, i.e. read with the offset in force just before the gap.
//!   For a wall time at the very start of a gap (Sao Paulo's 2018-11-04 00:00, when clocks went
//!   from 00:00 to 01:00) that is the first instant after the gap (01:00);
//! - a wall time that occurs twice (fall back) is the earlier of the two instants.
//!
//! **Cycle boundaries.** The billing anchor (default: the subscription start; same text forms)
//! is kept as a *local* wall time `A` — an anchor given as an RFC 3339 instant is first converted
//! to the calendar's local time. For every integer `k` (negative too), boundary `k` is the wall
//! time `A + k × interval`, turned into an instant by the rules above:
//! - `month` adds `k × count` months, `quarter` `3 × k × count` months and `year`
//!   `12 × k × count` months, each computed from the anchor (never chained from the previous
//!   boundary), keeping the anchor's wall time and clamping its day of month to the target
//!   month's last day: an anchor on Jan 31 gives Feb 28 (Feb 29 in leap years), Mar 31, Apr 30;
//!   a yearly anchor on Feb 29 gives Feb 28 in non-leap years;
//! - `day` adds `k × count` local calendar days and `week` `7 × k × count`, at the same wall
//!   time (so a daily period is 23 or 25 hours long across a DST change).
//!
//! Boundaries never go backwards in time. Two boundaries can be the same instant only when a
//! whole interval's worth of wall time is skipped (a daily interval across Samoa's missing
//! 2011-12-30): the period between them is then empty and no instant belongs to it (rating it
//! bills nothing: docs/conventions.md, "Empty periods").
//!
//! **Periods.** Period 0 is `[subscription start, first boundary strictly after the start)`; its
//! nominal cycle is `[last boundary at or before the start, that first boundary]`. When the anchor
//! equals the start, period 0 is a full cycle; otherwise it is a shortened first period (the
//! anchor may also be after the start: earlier boundaries come from negative `k`). Period `i ≥ 1`
//! is the `i`-th cycle after that: `[boundary, next boundary)`, and its cycle is itself. Because
//! boundaries are wall times, a start given as an instant inside the repeated hour of a fall-back
//! can make period 0 an hour shorter than its cycle.
//!
//! **End.** A subscription may end ([`Calendar::ending`]: a cancellation). The period containing
//! the end instant is cut there: `[start, end)`, its nominal cycle unchanged, so its flat fees
//! prorate as a shortened first period's do. An end on a boundary cuts nothing: the period before
//! it is whole. No period starts at or after the end: asking for one is
//! [`PeriodError::AfterEnd`].
//!
//! [`Calendar::period`] computes boundary numbers directly (no iteration over earlier periods),
//! so any index costs the same. Every boundary and every computed date must lie in years 1 to
//! 9999; otherwise the result is [`PeriodError::OutOfRange`] (e.g. a huge period index).
//!
//! **Proration.** [`Calendar::fraction`] is the share of a period's nominal cycle covered by
//! `[from, to)`, after clamping both into `[period.start, period.end]`:
//! - [`ProrationMode::Days`]: each instant is floored to its local date, and the fraction is
//!   `(date(to) − date(from)) / (date(cycle_end) − date(cycle_start))` in days: 17/31 for
//!   Jan 15 → Feb 1 of a January cycle, 10/29 for 10 days of February 2028;
//! - [`ProrationMode::Seconds`]: `(to − from) / (cycle_end − cycle_start)` in milliseconds: a
//!   23-hour DST day weighs less than a 24-hour one.
//!
//! The result is in `[0, 1]`, 0 when `to <= from`, and is the `Decimal` quotient (28 significant
//! digits). [`Calendar::fraction_parts`] gives the exact numerator and denominator, for callers
//! that multiply before dividing.
//!
//! Architecture Invariant: nothing in this module panics on input or loops in proportion to an
//! input value; every step that can fail returns a [`PeriodError`].

use chrono::{
    DateTime, Datelike, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat,
    TimeZone,
};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use crate::plan::{Interval, IntervalUnit, ProrationMode};
use crate::usage::Timestamp;

/// Earliest year a boundary or computed date may fall in.
const MIN_YEAR: i32 = 1;
/// Latest year a boundary or computed date may fall in.
const MAX_YEAR: i32 = 9999;
const MS_PER_DAY: i64 = 86_400_000;
/// How far the first estimate of a boundary number may be corrected; the estimate is off by at
/// most two in practice (time of day, DST), so hitting this bound means an impossible input.
const MAX_CORRECTION_STEPS: u32 = 16;

/// Why a period could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeriodError {
    /// The timezone is not an IANA name known to the tz database.
    #[error("unknown timezone `{0}`: expected an IANA name such as `Europe/Paris` or `UTC`")]
    UnknownTimezone(String),
    /// The plan interval has a count of 0, so periods would never advance.
    #[error("billing interval count is 0: a period must last at least one {}", unit_name(*.unit))]
    ZeroIntervalCount { unit: IntervalUnit },
    /// A start, anchor or instant text is not a local date, local date-time or RFC 3339 instant.
    #[error(
        "`{text}` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: {reason}"
    )]
    BadInstant { text: String, reason: String },
    /// An instant is before the subscription start, so no period contains it.
    #[error(
        "instant {} is before the subscription start {}",
        .instant.to_rfc3339(),
        .start.to_rfc3339()
    )]
    BeforeStart {
        instant: Timestamp,
        start: Timestamp,
    },
    /// An instant (or a period) is at or after the subscription's end, so no period contains it.
    #[error(
        "{} is at or after the subscription's end {}",
        .what,
        .end.to_rfc3339()
    )]
    AfterEnd { what: String, end: Timestamp },
    /// The subscription's end is not after its start.
    #[error(
        "the subscription's end {} is not after its start {}",
        .end.to_rfc3339(),
        .start.to_rfc3339()
    )]
    EndNotAfterStart { end: Timestamp, start: Timestamp },
    /// A period, boundary or date falls outside years 1 to 9999 (or outside `i64` milliseconds).
    #[error("{what} falls outside the supported calendar (years 1 to 9999)")]
    OutOfRange { what: String },
}

fn unit_name(unit: IntervalUnit) -> &'static str {
    match unit {
        IntervalUnit::Day => "day",
        IntervalUnit::Week => "week",
        IntervalUnit::Month => "month",
        IntervalUnit::Quarter => "quarter",
        IntervalUnit::Year => "year",
    }
}

/// A billing period: `[start, end)` as instants; `cycle_start`/`cycle_end` is the nominal full
/// cycle it belongs to (differs from `start`/`end` only for a shortened first period and the
/// period a subscription's end cuts short).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BillingPeriod {
    /// 0 for the subscription's first period.
    pub index: u32,
    /// First instant of the period (inclusive).
    pub start: Timestamp,
    /// First instant after the period (exclusive).
    pub end: Timestamp,
    /// Start of the nominal cycle (the boundary at or before `start`).
    pub cycle_start: Timestamp,
    /// End of the nominal cycle (equal to `end` except for the period a subscription's end
    /// cuts short).
    pub cycle_end: Timestamp,
}

/// A subscription's calendar: the customer's IANA timezone, the plan interval, the subscription
/// start and billing anchor.
#[derive(Clone, Debug)]
pub struct Calendar {
    tz: Tz,
    interval: Interval,
    start: Timestamp,
    /// The anchor as a local wall time (see the module doc).
    anchor: NaiveDateTime,
    /// Number `k` of the last boundary at or before `start`: period `i` starts at boundary
    /// `first_boundary + i` (period 0 at `start`).
    first_boundary: i64,
    /// The subscription's end, if it ends (see the module doc).
    end: Option<Timestamp>,
}

/// A parsed text: a wall time in the calendar's timezone or an absolute instant.
#[derive(Clone, Copy, Debug)]
enum Parsed {
    Local(NaiveDateTime),
    Instant(Timestamp),
}

impl Calendar {
    /// A calendar for a subscription in `timezone` (IANA name), billed every `interval`, starting
    /// at `subscription_start` and anchored on `billing_anchor` (default: the start). Both texts
    /// take the forms of [`Calendar::parse_instant`].
    pub fn new(
        timezone: &str,
        interval: Interval,
        subscription_start: &str,
        billing_anchor: Option<&str>,
    ) -> Result<Calendar, PeriodError> {
        let tz: Tz = timezone
            .parse()
            .map_err(|_| PeriodError::UnknownTimezone(timezone.to_owned()))?;
        if interval.count == 0 {
            return Err(PeriodError::ZeroIntervalCount {
                unit: interval.unit,
            });
        }
        let start_parsed = parse_text(subscription_start)?;
        let start = resolve_instant(tz, start_parsed, subscription_start)?;
        let anchor = match billing_anchor {
            Some(text) => resolve_local(tz, parse_text(text)?, text)?,
            None => resolve_local(tz, start_parsed, subscription_start)?,
        };
        let mut calendar = Calendar {
            tz,
            interval,
            start,
            anchor,
            first_boundary: 0,
            end: None,
        };
        calendar.first_boundary =
            calendar
                .last_boundary_at_or_before(start)
                .ok_or_else(|| PeriodError::OutOfRange {
                    what: format!(
                        "the first period of a subscription starting `{subscription_start}`"
                    ),
                })?;
        Ok(calendar)
    }

    /// This calendar for a subscription that ends at `end` (a text of the forms of
    /// [`Calendar::parse_instant`]): the period containing it is cut there and none starts at
    /// or after it.
    pub fn ending(self, end: &str) -> Result<Calendar, PeriodError> {
        let end = self.parse_instant(end)?;
        self.ending_at(end)
    }

    /// [`Calendar::ending`] at an instant.
    pub fn ending_at(mut self, end: Timestamp) -> Result<Calendar, PeriodError> {
        if end <= self.start {
            return Err(PeriodError::EndNotAfterStart {
                end,
                start: self.start,
            });
        }
        self.end = Some(end);
        Ok(self)
    }

    /// The subscription's end instant, if it ends.
    pub fn end(&self) -> Option<Timestamp> {
        self.end
    }

    /// The IANA name of the calendar's timezone.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The subscription start instant.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// Parses "2026-01-31" (local midnight in the calendar's timezone), "2026-01-31T09:30:00"
    /// (local date-time, fractional seconds allowed) or an RFC 3339 instant with offset or `Z`.
    /// Wall times that do not exist or occur twice follow the rules of the module doc.
    pub fn parse_instant(&self, text: &str) -> Result<Timestamp, PeriodError> {
        resolve_instant(self.tz, parse_text(text)?, text)
    }

    /// Period `index` of the subscription (0 = the first, possibly shortened, period).
    pub fn period(&self, index: u32) -> Result<BillingPeriod, PeriodError> {
        let out_of_range = || PeriodError::OutOfRange {
            what: format!("period {index}"),
        };
        let k = self
            .first_boundary
            .checked_add(i64::from(index))
            .ok_or_else(out_of_range)?;
        let cycle_start = self.boundary(k).ok_or_else(out_of_range)?;
        let next = k.checked_add(1).ok_or_else(out_of_range)?;
        let cycle_end = self.boundary(next).ok_or_else(out_of_range)?;
        let start = if index == 0 { self.start } else { cycle_start };
        let end = match self.end {
            Some(end) if start >= end => {
                return Err(PeriodError::AfterEnd {
                    what: format!("period {index}, starting {}", describe(start)),
                    end,
                });
            }
            Some(end) => end.min(cycle_end),
            None => cycle_end,
        };
        Ok(BillingPeriod {
            index,
            start,
            end,
            cycle_start,
            cycle_end,
        })
    }

    /// The period containing the instant (an instant exactly on a boundary belongs to the period
    /// that starts there); [`PeriodError::BeforeStart`] if it is before the subscription start.
    pub fn period_containing(&self, instant: Timestamp) -> Result<BillingPeriod, PeriodError> {
        if instant < self.start {
            return Err(PeriodError::BeforeStart {
                instant,
                start: self.start,
            });
        }
        if let Some(end) = self.end
            && instant >= end
        {
            return Err(PeriodError::AfterEnd {
                what: format!("instant {}", describe(instant)),
                end,
            });
        }
        let out_of_range = || PeriodError::OutOfRange {
            what: format!("the period containing {}", describe(instant)),
        };
        let k = self
            .last_boundary_at_or_before(instant)
            .ok_or_else(out_of_range)?;
        let index = k
            .checked_sub(self.first_boundary)
            .ok_or_else(out_of_range)?;
        let index = u32::try_from(index).map_err(|_| out_of_range())?;
        self.period(index)
    }

    /// The instant `days` local calendar days after `instant`, at the same local wall time
    /// (DST-safe: one day after 00:00 is the next 00:00 whether the day lasts 23, 24 or 25 hours).
    /// A wall time that does not exist on the target day is shifted forward by the gap; one that
    /// occurs twice is the earlier instant.
    pub fn add_days(&self, instant: Timestamp, days: u32) -> Result<Timestamp, PeriodError> {
        let out_of_range = || PeriodError::OutOfRange {
            what: format!("{days} days after {}", describe(instant)),
        };
        let local = local_of(self.tz, instant).ok_or_else(out_of_range)?;
        let date = date_plus_days(local.date(), i64::from(days)).ok_or_else(out_of_range)?;
        to_instant(self.tz, date.and_time(local.time())).ok_or_else(out_of_range)
    }

    /// The share of the nominal cycle of `period` covered by `[from, to)` after clamping both into
    /// `[period.start, period.end]`, in `[0, 1]` (0 if `to <= from`). Days mode: local calendar
    /// days, each instant floored to the start of its local day:
    /// `(date(to) − date(from)) / (date(cycle_end) − date(cycle_start))`. Seconds mode:
    /// `(to − from) / (cycle_end − cycle_start)` in milliseconds. The quotient is a `Decimal`
    /// division (28 significant digits); see [`Calendar::fraction_parts`] for the exact terms.
    pub fn fraction(
        &self,
        mode: ProrationMode,
        period: &BillingPeriod,
        from: Timestamp,
        to: Timestamp,
    ) -> Decimal {
        let (numerator, denominator) = self.fraction_parts(mode, period, from, to);
        Decimal::from(numerator)
            .checked_div(Decimal::from(denominator))
            .unwrap_or(Decimal::ZERO)
            .min(Decimal::ONE)
    }

    /// The exact terms of [`Calendar::fraction`]: `(numerator, denominator)`, in local days
    /// (days mode) or milliseconds (seconds mode), with `0 <= numerator <= denominator` and
    /// `denominator >= 1`. An empty overlap, an empty cycle, or instants outside the supported
    /// range give `(0, 1)`.
    pub fn fraction_parts(
        &self,
        mode: ProrationMode,
        period: &BillingPeriod,
        from: Timestamp,
        to: Timestamp,
    ) -> (i64, i64) {
        const NOTHING: (i64, i64) = (0, 1);
        // Clamp by hand: `Ord::clamp` panics when a hand-built period has start > end.
        let from = from.max(period.start).min(period.end);
        let to = to.max(period.start).min(period.end);
        if to <= from {
            return NOTHING;
        }
        let terms = match mode {
            ProrationMode::Seconds => {
                to.0.checked_sub(from.0)
                    .zip(period.cycle_end.0.checked_sub(period.cycle_start.0))
            }
            ProrationMode::Days => self
                .local_days_between(from, to)
                .zip(self.local_days_between(period.cycle_start, period.cycle_end)),
        };
        match terms {
            Some((numerator, denominator)) if denominator > 0 && numerator > 0 => {
                (numerator.min(denominator), denominator)
            }
            _ => NOTHING,
        }
    }

    /// RFC 3339 text of the instant with the calendar timezone's local offset, seconds precision
    /// (sub-second part dropped): `"2026-03-08T00:00:00-05:00"`, `"+13:00"` for
    /// Pacific/Tongatapu, `"+00:00"` (never `Z`) for UTC. An instant outside chrono's range is
    /// written as its millisecond number.
    pub fn format(&self, instant: Timestamp) -> String {
        match (
            local_of(self.tz, instant),
            DateTime::from_timestamp_millis(instant.0),
        ) {
            // `local_of` succeeding guarantees `to_rfc3339_opts` cannot overflow.
            (Some(_), Some(utc)) => utc
                .with_timezone(&self.tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            _ => instant.0.to_string(),
        }
    }

    /// `date(to) − date(from)` in local calendar days (`None` when out of range).
    fn local_days_between(&self, from: Timestamp, to: Timestamp) -> Option<i64> {
        let day = |t: Timestamp| local_of(self.tz, t).map(|local| day_number(local.date()));
        day(to)?.checked_sub(day(from)?)
    }

    /// Boundary `k` as an instant (`None` when out of range).
    fn boundary(&self, k: i64) -> Option<Timestamp> {
        to_instant(self.tz, self.boundary_local(k)?)
    }

    /// Boundary `k` as a local wall time: the anchor plus `k` intervals, computed from the anchor.
    fn boundary_local(&self, k: i64) -> Option<NaiveDateTime> {
        let count = i64::from(self.interval.count);
        let date = match self.interval.unit {
            IntervalUnit::Day | IntervalUnit::Week => {
                let per = count.checked_mul(days_per_unit(self.interval.unit))?;
                date_plus_days(self.anchor.date(), k.checked_mul(per)?)?
            }
            IntervalUnit::Month | IntervalUnit::Quarter | IntervalUnit::Year => {
                let per = count.checked_mul(months_per_unit(self.interval.unit))?;
                let month_number =
                    month_number(self.anchor.date()).checked_add(k.checked_mul(per)?)?;
                let year = i32::try_from(month_number.div_euclid(12)).ok()?;
                let month = u32::try_from(month_number.rem_euclid(12))
                    .ok()?
                    .checked_add(1)?;
                if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
                    return None;
                }
                let day = self.anchor.day().min(days_in_month(year, month));
                NaiveDate::from_ymd_opt(year, month, day)?
            }
        };
        Some(date.and_time(self.anchor.time()))
    }

    /// The largest `k` whose boundary is at or before `instant`: estimated from local dates, then
    /// corrected by a bounded number of steps.
    fn last_boundary_at_or_before(&self, instant: Timestamp) -> Option<i64> {
        let local = local_of(self.tz, instant)?;
        let count = i64::from(self.interval.count);
        let mut k = match self.interval.unit {
            IntervalUnit::Day | IntervalUnit::Week => {
                let per = count.checked_mul(days_per_unit(self.interval.unit))?;
                let elapsed =
                    day_number(local.date()).checked_sub(day_number(self.anchor.date()))?;
                elapsed.div_euclid(per)
            }
            IntervalUnit::Month | IntervalUnit::Quarter | IntervalUnit::Year => {
                let per = count.checked_mul(months_per_unit(self.interval.unit))?;
                let elapsed =
                    month_number(local.date()).checked_sub(month_number(self.anchor.date()))?;
                elapsed.div_euclid(per)
            }
        };
        let mut steps = 0;
        while self.boundary(k)? > instant {
            k = k.checked_sub(1)?;
            steps += 1;
            if steps > MAX_CORRECTION_STEPS {
                return None;
            }
        }
        while self.boundary(k.checked_add(1)?)? <= instant {
            k = k.checked_add(1)?;
            steps += 1;
            if steps > MAX_CORRECTION_STEPS {
                return None;
            }
        }
        Some(k)
    }
}

fn days_per_unit(unit: IntervalUnit) -> i64 {
    if unit == IntervalUnit::Week { 7 } else { 1 }
}

fn months_per_unit(unit: IntervalUnit) -> i64 {
    match unit {
        IntervalUnit::Quarter => 3,
        IntervalUnit::Year => 12,
        _ => 1,
    }
}

/// Months since year 0: `year * 12 + month0`.
fn month_number(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

fn day_number(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce())
}

/// `date + days`, if the result is in years 1 to 9999.
fn date_plus_days(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    let number = i32::try_from(day_number(date).checked_add(days)?).ok()?;
    let result = NaiveDate::from_num_days_from_ce_opt(number)?;
    (MIN_YEAR..=MAX_YEAR)
        .contains(&result.year())
        .then_some(result)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if NaiveDate::from_ymd_opt(year, 2, 29).is_some() => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// An instant for messages: RFC 3339 in UTC, or the millisecond number if out of range.
fn describe(instant: Timestamp) -> String {
    instant.to_rfc3339()
}

/// The local wall time of an instant, or `None` outside chrono's range (never panics, unlike
/// `DateTime::naive_local` at the edges).
fn local_of(tz: Tz, instant: Timestamp) -> Option<NaiveDateTime> {
    let utc = DateTime::from_timestamp_millis(instant.0)?.naive_utc();
    let offset = chrono::Offset::fix(&tz.offset_from_utc_datetime(&utc));
    utc.checked_add_offset(offset)
}

/// A local wall time as an instant: a skipped wall time is shifted forward by the gap, a repeated
/// one is the earlier instant.
fn to_instant(tz: Tz, local: NaiveDateTime) -> Option<Timestamp> {
    match tz.from_local_datetime(&local) {
        MappedLocalTime::Single(t) => Some(Timestamp(t.timestamp_millis())),
        MappedLocalTime::Ambiguous(a, b) => {
            Some(Timestamp(a.timestamp_millis().min(b.timestamp_millis())))
        }
        MappedLocalTime::None => resolve_gap(tz, local),
    }
}

/// A wall time inside a gap, read with the offset in force just before the gap.
///
/// Every UTC offset is less than a day, so the wall time of `local − 1 day` (as UTC) is before
/// `local` and that of `local + 1 day` after it. A bisection over that window (about 28 steps)
/// finds the two adjacent milliseconds where the wall clock jumps over `local`.
fn resolve_gap(tz: Tz, local: NaiveDateTime) -> Option<Timestamp> {
    let wall = local.and_utc().timestamp_millis();
    let mut before = wall.checked_sub(MS_PER_DAY)?;
    let mut after = wall.checked_add(MS_PER_DAY)?;
    if local_of(tz, Timestamp(before))? >= local || local_of(tz, Timestamp(after))? <= local {
        return None;
    }
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if local_of(tz, Timestamp(middle))? < local {
            before = middle;
        } else {
            after = middle;
        }
    }
    let offset_before = local_of(tz, Timestamp(before))?
        .and_utc()
        .timestamp_millis()
        .checked_sub(before)?;
    wall.checked_sub(offset_before).map(Timestamp)
}

fn resolve_instant(tz: Tz, parsed: Parsed, text: &str) -> Result<Timestamp, PeriodError> {
    match parsed {
        Parsed::Instant(instant) => Ok(instant),
        Parsed::Local(local) => to_instant(tz, local).ok_or_else(|| PeriodError::OutOfRange {
            what: format!("`{text}`"),
        }),
    }
}

fn resolve_local(tz: Tz, parsed: Parsed, text: &str) -> Result<NaiveDateTime, PeriodError> {
    match parsed {
        Parsed::Local(local) => Ok(local),
        Parsed::Instant(instant) => local_of(tz, instant).ok_or_else(|| PeriodError::OutOfRange {
            what: format!("`{text}`"),
        }),
    }
}

/// Reads the three text forms. Shapes are checked by hand first so that chrono's lenient
/// numeric fields (signs, more than four year digits) are not accepted.
fn parse_text(text: &str) -> Result<Parsed, PeriodError> {
    let bad = |reason: &str| PeriodError::BadInstant {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let bytes = text.as_bytes();
    if !matches_shape(bytes, b"dddd-dd-dd") {
        return Err(bad("expected it to begin with a `YYYY-MM-DD` date"));
    }
    if bytes.len() == 10 {
        return date_of(bytes)
            .map(|date| Parsed::Local(date.and_time(NaiveTime::MIN)))
            .ok_or_else(|| bad(&format!("no such date ({OUT_OF_RANGE})")));
    }
    if is_local_date_time(bytes) {
        return date_time_of(bytes)
            .map(Parsed::Local)
            .ok_or_else(|| bad(&format!("no such local date-time ({OUT_OF_RANGE})")));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Parsed::Instant(Timestamp(t.timestamp_millis())))
        .map_err(|e| {
            bad(&format!(
                "not a local date-time, nor an RFC 3339 instant with offset ({e})"
            ))
        })
}

/// chrono's message for a field out of range or a date that does not exist, the one way the two
/// local forms below fail once their shape is checked.
const OUT_OF_RANGE: &str = "input is out of range";

/// The ASCII digits of `digits` as a number (at most four, checked by the shape).
fn number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |n, digit| n * 10 + u32::from(digit - b'0'))
}

/// A `YYYY-MM-DD` text (its shape checked) as chrono's `%Y-%m-%d` reads it, by hand: chrono's
/// format-string parser is ~20 KB of the browser package.
fn date_of(bytes: &[u8]) -> Option<NaiveDate> {
    let year = i32::try_from(number(&bytes[0..4])).ok()?;
    NaiveDate::from_ymd_opt(year, number(&bytes[5..7]), number(&bytes[8..10]))
}

/// A `YYYY-MM-DDThh:mm:ss[.f]` text (its shape checked by [`is_local_date_time`]) as chrono's
/// `%Y-%m-%dT%H:%M:%S%.f` reads it: second 60 is a leap second (59 plus a second of
/// nanoseconds), the fraction's 1 to 9 digits are its leading digits of nanoseconds.
fn date_time_of(bytes: &[u8]) -> Option<NaiveDateTime> {
    let date = date_of(bytes)?;
    let (second, leap) = match number(&bytes[17..19]) {
        60 => (59, 1_000_000_000),
        second @ 0..=59 => (second, 0),
        _ => return None,
    };
    let fraction = bytes.get(20..).unwrap_or_default();
    let nano = (fraction.len()..9).fold(number(fraction), |n, _| n * 10);
    let time = NaiveTime::from_hms_nano_opt(
        number(&bytes[11..13]),
        number(&bytes[14..16]),
        second,
        leap + nano,
    )?;
    Some(date.and_time(time))
}

/// `bytes` starts with `shape`, where `d` stands for an ASCII digit and other bytes for themselves.
fn matches_shape(bytes: &[u8], shape: &[u8]) -> bool {
    bytes.len() >= shape.len()
        && shape.iter().zip(bytes).all(|(&s, &b)| {
            if s == b'd' {
                b.is_ascii_digit()
            } else {
                s == b
            }
        })
}

/// `YYYY-MM-DDThh:mm:ss` optionally followed by `.` and 1 to 9 digits, nothing else.
fn is_local_date_time(bytes: &[u8]) -> bool {
    if !matches_shape(bytes, b"dddd-dd-ddTdd:dd:dd") {
        return false;
    }
    match &bytes[19..] {
        [] => true,
        [b'.', fraction @ ..] => {
            (1..=9).contains(&fraction.len()) && fraction.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(unit: IntervalUnit, count: u32) -> Interval {
        Interval { unit, count }
    }

    fn month() -> Interval {
        every(IntervalUnit::Month, 1)
    }

    fn calendar(tz: &str, interval: Interval, start: &str, anchor: Option<&str>) -> Calendar {
        Calendar::new(tz, interval, start, anchor).expect("valid calendar")
    }

    /// Renders periods one a line: `index: start .. end (hours)`, plus the cycle when it differs.
    fn render(calendar: &Calendar, period: &BillingPeriod) -> String {
        let hours =
            (Decimal::from(period.end.0 - period.start.0) / Decimal::from(3_600_000)).normalize();
        let mut line = format!(
            "{}: {} .. {} ({hours}h)",
            period.index,
            calendar.format(period.start),
            calendar.format(period.end)
        );
        if (period.cycle_start, period.cycle_end) != (period.start, period.end) {
            line += &format!(
                " cycle {} .. {}",
                calendar.format(period.cycle_start),
                calendar.format(period.cycle_end)
            );
        }
        line
    }

    /// Compares text line by line, ignoring indentation and blank lines of `expected`.
    fn assert_text(actual: &str, expected: &str) {
        let expected: Vec<&str> = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let actual: Vec<&str> = actual.lines().collect();
        assert_eq!(actual, expected, "\nactual:\n{}\n", actual.join("\n"));
    }

    /// The data-driven check: periods `indexes` of the calendar, rendered.
    fn check(calendar: &Calendar, indexes: &[u32], expected: &str) {
        let lines: Vec<String> = indexes
            .iter()
            .map(|&index| match calendar.period(index) {
                Ok(period) => render(calendar, &period),
                Err(e) => format!("{index}: error: {e}"),
            })
            .collect();
        assert_text(&lines.join("\n"), expected);
    }

    /// Checks `fraction_parts` (as `n/d`) and that `fraction` is their `Decimal` quotient.
    fn check_fraction(
        calendar: &Calendar,
        mode: ProrationMode,
        index: u32,
        from: &str,
        to: &str,
        expected: &str,
    ) {
        let period = calendar.period(index).expect("period");
        let from = calendar.parse_instant(from).expect("from");
        let to = calendar.parse_instant(to).expect("to");
        let (numerator, denominator) = calendar.fraction_parts(mode, &period, from, to);
        assert_eq!(format!("{numerator}/{denominator}"), expected);
        assert_eq!(
            calendar.fraction(mode, &period, from, to),
            Decimal::from(numerator) / Decimal::from(denominator)
        );
    }

    fn check_error<T: std::fmt::Debug>(result: Result<T, PeriodError>, expected: &str) {
        match result {
            Ok(value) => panic!("expected error `{expected}`, got {value:?}"),
            Err(e) => assert_eq!(e.to_string(), expected),
        }
    }

    #[test]
    fn month_end_anchor_clamps_day_from_the_anchor() {
        check(
            &calendar("UTC", month(), "2026-01-31", None),
            &[0, 1, 2, 3, 4],
            "
            0: 2026-01-31T00:00:00+00:00 .. 2026-02-28T00:00:00+00:00 (672h)
            1: 2026-02-28T00:00:00+00:00 .. 2026-03-31T00:00:00+00:00 (744h)
            2: 2026-03-31T00:00:00+00:00 .. 2026-04-30T00:00:00+00:00 (720h)
            3: 2026-04-30T00:00:00+00:00 .. 2026-05-31T00:00:00+00:00 (744h)
            4: 2026-05-31T00:00:00+00:00 .. 2026-06-30T00:00:00+00:00 (720h)
            ",
        );
        check(
            &calendar("UTC", month(), "2028-01-31", None),
            &[0, 1],
            "
            0: 2028-01-31T00:00:00+00:00 .. 2028-02-29T00:00:00+00:00 (696h)
            1: 2028-02-29T00:00:00+00:00 .. 2028-03-31T00:00:00+00:00 (744h)
            ",
        );
    }

    #[test]
    fn yearly_feb_29_anchor() {
        check(
            &calendar("UTC", every(IntervalUnit::Year, 1), "2028-02-29", None),
            &[0, 1, 3],
            "
            0: 2028-02-29T00:00:00+00:00 .. 2029-02-28T00:00:00+00:00 (8760h)
            1: 2029-02-28T00:00:00+00:00 .. 2030-02-28T00:00:00+00:00 (8760h)
            3: 2031-02-28T00:00:00+00:00 .. 2032-02-29T00:00:00+00:00 (8784h)
            ",
        );
    }

    #[test]
    fn new_york_dst_changes_keep_local_midnight() {
        check(
            &calendar("America/New_York", month(), "2026-02-01", None),
            &[0, 1, 2],
            "
            0: 2026-02-01T00:00:00-05:00 .. 2026-03-01T00:00:00-05:00 (672h)
            1: 2026-03-01T00:00:00-05:00 .. 2026-04-01T00:00:00-04:00 (743h)
            2: 2026-04-01T00:00:00-04:00 .. 2026-05-01T00:00:00-04:00 (720h)
            ",
        );
        check(
            &calendar("America/New_York", month(), "2026-10-15", None),
            &[0, 1],
            "
            0: 2026-10-15T00:00:00-04:00 .. 2026-11-15T00:00:00-05:00 (745h)
            1: 2026-11-15T00:00:00-05:00 .. 2026-12-15T00:00:00-05:00 (720h)
            ",
        );
        let ny = calendar("America/New_York", month(), "2026-02-01", None);
        let march_8 = ny.parse_instant("2026-03-08").expect("date");
        assert_eq!(ny.format(march_8), "2026-03-08T00:00:00-05:00");
        assert_eq!(
            ny.format(ny.add_days(march_8, 1).expect("add")),
            "2026-03-09T00:00:00-04:00"
        );
        assert_eq!(
            ny.add_days(march_8, 1).expect("add").0 - march_8.0,
            23 * 3_600_000
        );
    }

    #[test]
    fn an_end_cuts_its_period_and_no_period_follows_it() {
        let cal = calendar("Europe/Paris", month(), "2026-10-01", None)
            .ending("2026-11-16T10:30:00")
            .expect("an end after the start");
        let cut = cal.period(1).expect("November");
        assert_eq!(cal.format(cut.start), "2026-11-01T00:00:00+01:00");
        assert_eq!(cal.format(cut.end), "2026-11-16T10:30:00+01:00");
        assert_eq!(cal.format(cut.cycle_end), "2026-12-01T00:00:00+01:00");
        // Days mode: 15 local days of a 30-day cycle.
        assert_eq!(
            cal.fraction_parts(ProrationMode::Days, &cut, cut.start, cut.end),
            (15, 30)
        );
        assert_eq!(cal.period_containing(Timestamp(cut.end.0 - 1)), Ok(cut));
        assert!(matches!(
            cal.period_containing(cut.end),
            Err(PeriodError::AfterEnd { .. })
        ));
        assert!(matches!(cal.period(2), Err(PeriodError::AfterEnd { .. })));
        // October is whole.
        assert_eq!(
            cal.period(0).expect("October").end,
            cal.period(0).expect("October").cycle_end
        );
        // An end on a boundary cuts nothing.
        let on_boundary = calendar("Europe/Paris", month(), "2026-10-01", None)
            .ending("2026-12-01")
            .expect("an end");
        let november = on_boundary.period(1).expect("November");
        assert_eq!(november.end, november.cycle_end);
        assert!(matches!(
            on_boundary.period(2),
            Err(PeriodError::AfterEnd { .. })
        ));
        // An end at or before the start.
        for end in ["2026-10-01", "2026-09-30"] {
            assert!(matches!(
                calendar("Europe/Paris", month(), "2026-10-01", None).ending(end),
                Err(PeriodError::EndNotAfterStart { .. })
            ));
        }
    }

    #[test]
    fn utc_plus_13_starts_at_previous_day_11z() {
        for tz in ["Pacific/Tongatapu", "Pacific/Apia"] {
            let cal = calendar(tz, month(), "2026-01-01", None);
            let first = cal.period(0).expect("period");
            assert_eq!(first.start.to_rfc3339(), "2025-12-31T11:00:00Z", "{tz}");
            check(
                &cal,
                &[0],
                "0: 2026-01-01T00:00:00+13:00 .. 2026-02-01T00:00:00+13:00 (744h)",
            );
        }
    }

    #[test]
    fn midnight_in_a_dst_gap_maps_to_one_o_clock() {
        // Brazil started DST on 2018-11-04 at 00:00, straight to 01:00. The anchor stays at
        // local midnight: the next boundary is back at 00:00.
        check(
            &calendar("America/Sao_Paulo", month(), "2018-10-04", None),
            &[0, 1, 2],
            "
            0: 2018-10-04T00:00:00-03:00 .. 2018-11-04T01:00:00-02:00 (744h)
            1: 2018-11-04T01:00:00-02:00 .. 2018-12-04T00:00:00-02:00 (719h)
            2: 2018-12-04T00:00:00-02:00 .. 2019-01-04T00:00:00-02:00 (744h)
            ",
        );
        let sao_paulo = calendar("America/Sao_Paulo", month(), "2018-11-04", None);
        assert_eq!(
            sao_paulo.format(sao_paulo.start()),
            "2018-11-04T01:00:00-02:00"
        );
        // Inside the gap, shifted forward by the gap's length (one hour).
        let shifted = sao_paulo
            .parse_instant("2018-11-04T00:30:00")
            .expect("instant");
        assert_eq!(sao_paulo.format(shifted), "2018-11-04T01:30:00-02:00");
        // A repeated wall time (New York, 2026-11-01 01:30) is the earlier instant.
        let ny = calendar("America/New_York", month(), "2026-11-01", None);
        let repeated = ny.parse_instant("2026-11-01T01:30:00").expect("instant");
        assert_eq!(ny.format(repeated), "2026-11-01T01:30:00-04:00");
    }

    #[test]
    fn samoa_skipped_day_gives_an_empty_daily_period() {
        // Samoa went from 2011-12-29T23:59:59-10:00 to 2011-12-31T00:00:00+14:00.
        let apia = calendar(
            "Pacific/Apia",
            every(IntervalUnit::Day, 1),
            "2011-12-29",
            None,
        );
        check(
            &apia,
            &[0, 1, 2],
            "
            0: 2011-12-29T00:00:00-10:00 .. 2011-12-31T00:00:00+14:00 (24h)
            1: 2011-12-31T00:00:00+14:00 .. 2011-12-31T00:00:00+14:00 (0h)
            2: 2011-12-31T00:00:00+14:00 .. 2012-01-01T00:00:00+14:00 (24h)
            ",
        );
    }

    #[test]
    fn shortened_first_period_and_its_fraction() {
        let cal = calendar("UTC", month(), "2026-01-15", Some("2026-01-01"));
        check(
            &cal,
            &[0, 1],
            "
            0: 2026-01-15T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00 (408h) cycle 2026-01-01T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00
            1: 2026-02-01T00:00:00+00:00 .. 2026-03-01T00:00:00+00:00 (672h)
            ",
        );
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2026-01-15",
            "2026-02-01",
            "17/31",
        );
        // A partial day counts from the start of its local day; clamped into the period.
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2026-01-20T18:00:00",
            "2026-03-01",
            "12/31",
        );
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2025-12-01",
            "2026-01-10",
            "0/1",
        );
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2026-01-25",
            "2026-01-20",
            "0/1",
        );
        assert_eq!(
            cal.fraction(
                ProrationMode::Days,
                &cal.period(0).expect("period"),
                cal.start(),
                Timestamp(i64::MAX)
            ),
            Decimal::from(17) / Decimal::from(31)
        );
        // An anchor after the start: boundaries before it come from negative multiples.
        check(
            &calendar("UTC", month(), "2026-01-15", Some("2026-03-01T00:00:00Z")),
            &[0],
            "0: 2026-01-15T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00 (408h) cycle 2026-01-01T00:00:00+00:00 .. 2026-02-01T00:00:00+00:00",
        );
    }

    #[test]
    fn seconds_mode_differs_from_days_mode_across_dst() {
        let ny = calendar("America/New_York", month(), "2026-03-01", None);
        check_fraction(
            &ny,
            ProrationMode::Days,
            0,
            "2026-03-01",
            "2026-03-09",
            "8/31",
        );
        check_fraction(
            &ny,
            ProrationMode::Seconds,
            0,
            "2026-03-01",
            "2026-03-09",
            &format!("{}/{}", 191 * 3_600_000_i64, 743 * 3_600_000_i64),
        );
        let period = ny.period(0).expect("period");
        let (from, to) = (period.start, ny.parse_instant("2026-03-09").expect("to"));
        assert_ne!(
            ny.fraction(ProrationMode::Days, &period, from, to),
            ny.fraction(ProrationMode::Seconds, &period, from, to)
        );
        assert_eq!(
            ny.fraction(ProrationMode::Seconds, &period, period.start, period.end),
            Decimal::ONE
        );
    }

    #[test]
    fn february_2028_has_29_days() {
        let cal = calendar("Europe/Paris", month(), "2028-02-01", None);
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2028-02-10",
            "2028-02-20",
            "10/29",
        );
        check_fraction(
            &cal,
            ProrationMode::Days,
            0,
            "2028-02-01",
            "2028-03-01",
            "29/29",
        );
    }

    #[test]
    fn period_containing_boundaries_and_before_start() {
        let cal = calendar(
            "America/New_York",
            month(),
            "2026-01-15",
            Some("2026-01-01"),
        );
        let at = |text: &str| {
            let period = cal.period_containing(cal.parse_instant(text).expect("instant"));
            period
                .map(|p| render(&cal, &p))
                .unwrap_or_else(|e| format!("error: {e}"))
        };
        let lines = [
            at("2026-01-15"),
            at("2026-01-31T23:59:59.999"),
            at("2026-02-01"),
            at("2026-04-01T03:59:59.999Z"),
            at("2026-04-01T04:00:00Z"),
            at("2036-04-15T12:00:00"),
            at("2026-01-14T23:59:59.999"),
        ];
        assert_text(
            &lines.join("\n"),
            "
            0: 2026-01-15T00:00:00-05:00 .. 2026-02-01T00:00:00-05:00 (408h) cycle 2026-01-01T00:00:00-05:00 .. 2026-02-01T00:00:00-05:00
            0: 2026-01-15T00:00:00-05:00 .. 2026-02-01T00:00:00-05:00 (408h) cycle 2026-01-01T00:00:00-05:00 .. 2026-02-01T00:00:00-05:00
            1: 2026-02-01T00:00:00-05:00 .. 2026-03-01T00:00:00-05:00 (672h)
            2: 2026-03-01T00:00:00-05:00 .. 2026-04-01T00:00:00-04:00 (743h)
            3: 2026-04-01T00:00:00-04:00 .. 2026-05-01T00:00:00-04:00 (720h)
            123: 2036-04-01T00:00:00-04:00 .. 2036-05-01T00:00:00-04:00 (720h)
            error: instant 2026-01-15T04:59:59.999Z is before the subscription start 2026-01-15T05:00:00Z
            ",
        );
    }

    #[test]
    fn weekly_quarterly_and_two_month_intervals() {
        check(
            &calendar("UTC", every(IntervalUnit::Week, 1), "2026-01-07", Some("2026-01-05")),
            &[0, 1, 2],
            "
            0: 2026-01-07T00:00:00+00:00 .. 2026-01-12T00:00:00+00:00 (120h) cycle 2026-01-05T00:00:00+00:00 .. 2026-01-12T00:00:00+00:00
            1: 2026-01-12T00:00:00+00:00 .. 2026-01-19T00:00:00+00:00 (168h)
            2: 2026-01-19T00:00:00+00:00 .. 2026-01-26T00:00:00+00:00 (168h)
            ",
        );
        check(
            &calendar(
                "Europe/Paris",
                every(IntervalUnit::Week, 2),
                "2026-03-23T09:30:00",
                None,
            ),
            &[0, 1],
            "
            0: 2026-03-23T09:30:00+01:00 .. 2026-04-06T09:30:00+02:00 (335h)
            1: 2026-04-06T09:30:00+02:00 .. 2026-04-20T09:30:00+02:00 (336h)
            ",
        );
        check(
            &calendar("UTC", every(IntervalUnit::Quarter, 1), "2026-01-31", None),
            &[0, 1, 2, 3],
            "
            0: 2026-01-31T00:00:00+00:00 .. 2026-04-30T00:00:00+00:00 (2136h)
            1: 2026-04-30T00:00:00+00:00 .. 2026-07-31T00:00:00+00:00 (2208h)
            2: 2026-07-31T00:00:00+00:00 .. 2026-10-31T00:00:00+00:00 (2208h)
            3: 2026-10-31T00:00:00+00:00 .. 2027-01-31T00:00:00+00:00 (2208h)
            ",
        );
        check(
            &calendar("UTC", every(IntervalUnit::Month, 2), "2026-01-31", None),
            &[0, 1, 2],
            "
            0: 2026-01-31T00:00:00+00:00 .. 2026-03-31T00:00:00+00:00 (1416h)
            1: 2026-03-31T00:00:00+00:00 .. 2026-05-31T00:00:00+00:00 (1464h)
            2: 2026-05-31T00:00:00+00:00 .. 2026-07-31T00:00:00+00:00 (1464h)
            ",
        );
        check(
            &calendar(
                "UTC",
                every(IntervalUnit::Day, 3),
                "2026-02-27T12:00:00Z",
                None,
            ),
            &[0, 1],
            "
            0: 2026-02-27T12:00:00+00:00 .. 2026-03-02T12:00:00+00:00 (72h)
            1: 2026-03-02T12:00:00+00:00 .. 2026-03-05T12:00:00+00:00 (72h)
            ",
        );
    }

    #[test]
    fn absurd_inputs_are_typed_errors() {
        let cal = calendar("UTC", month(), "2026-01-31", None);
        check(
            &cal,
            &[95_686, 95_687, u32::MAX],
            "
            95686: 9999-11-30T00:00:00+00:00 .. 9999-12-31T00:00:00+00:00 (744h)
            95687: error: period 95687 falls outside the supported calendar (years 1 to 9999)
            4294967295: error: period 4294967295 falls outside the supported calendar (years 1 to 9999)
            ",
        );
        check(
            &calendar("UTC", every(IntervalUnit::Day, 1), "2026-01-01", None),
            &[u32::MAX],
            "4294967295: error: period 4294967295 falls outside the supported calendar (years 1 to 9999)",
        );
        check_error(
            Calendar::new(
                "UTC",
                every(IntervalUnit::Week, u32::MAX),
                "2026-01-01",
                None,
            ),
            "the first period of a subscription starting `2026-01-01` falls outside the supported calendar (years 1 to 9999)",
        );
        check_error(
            cal.period_containing(Timestamp(i64::MAX)),
            "the period containing 9223372036854775807 falls outside the supported calendar (years 1 to 9999)",
        );
        check_error(
            cal.add_days(cal.start(), u32::MAX),
            "4294967295 days after 2026-01-31T00:00:00Z falls outside the supported calendar (years 1 to 9999)",
        );
        check_error(
            Calendar::new("UTC", every(IntervalUnit::Week, 0), "2026-01-01", None),
            "billing interval count is 0: a period must last at least one week",
        );
        check_error(
            Calendar::new("Mars/Olympus_Mons", month(), "2026-01-01", None),
            "unknown timezone `Mars/Olympus_Mons`: expected an IANA name such as `Europe/Paris` or `UTC`",
        );
        check_error(
            Calendar::new("UTC", month(), "9999-12-15", None),
            "the first period of a subscription starting `9999-12-15` falls outside the supported calendar (years 1 to 9999)",
        );
        assert_eq!(cal.format(Timestamp(i64::MIN)), "-9223372036854775808");
        let (from, to) = (Timestamp(i64::MIN), Timestamp(i64::MAX));
        let bogus = BillingPeriod {
            index: 0,
            start: to,
            end: from,
            cycle_start: to,
            cycle_end: from,
        };
        assert_eq!(
            cal.fraction(ProrationMode::Days, &bogus, from, to),
            Decimal::ZERO
        );
        let huge = BillingPeriod {
            index: 0,
            start: from,
            end: to,
            cycle_start: from,
            cycle_end: to,
        };
        assert_eq!(
            cal.fraction(ProrationMode::Seconds, &huge, from, to),
            Decimal::ZERO
        );
        assert_eq!(
            cal.fraction(ProrationMode::Days, &huge, from, to),
            Decimal::ZERO
        );
    }

    /// The hand-written readers of the two local forms against chrono's format strings.
    #[test]
    fn local_forms_read_as_chrono_reads_them() {
        let mut n_texts = 0;
        for year in ["0000", "1900", "1970", "2000", "2024", "2026", "9999"] {
            for month in 0..=13 {
                for day in [0, 1, 28, 29, 30, 31, 32, 99] {
                    let date = format!("{year}-{month:02}-{day:02}");
                    let chrono = NaiveDate::parse_from_str(&date, "%Y-%m-%d");
                    if let Err(error) = &chrono {
                        assert_eq!(error.to_string(), OUT_OF_RANGE, "{date}");
                    }
                    assert_eq!(date_of(date.as_bytes()), chrono.ok(), "{date}");
                    for time in [
                        "00:00:00",
                        "23:59:59",
                        "23:59:60",
                        "12:30:60",
                        "24:00:00",
                        "23:60:00",
                        "23:59:61",
                        "99:99:99",
                        "09:30:00.1",
                        "09:30:00.123456789",
                        "23:59:60.999999999",
                        "09:30:00.000000001",
                        "09:30:00.0",
                    ] {
                        let text = format!("{date}T{time}");
                        assert!(is_local_date_time(text.as_bytes()), "{text}");
                        let chrono = NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f");
                        if let Err(error) = &chrono {
                            assert_eq!(error.to_string(), OUT_OF_RANGE, "{text}");
                        }
                        assert_eq!(date_time_of(text.as_bytes()), chrono.ok(), "{text}");
                        n_texts += 1;
                    }
                }
            }
        }
        assert!(n_texts > 10_000);
    }

    #[test]
    fn instant_text_forms() {
        let cal = calendar("America/New_York", month(), "2026-01-01", None);
        let parse = |text: &str| match cal.parse_instant(text) {
            Ok(t) => format!("[{text}] => {}", t.to_rfc3339()),
            Err(e) => format!("[{text}] => error: {e}"),
        };
        let lines = [
            parse("2026-01-31"),
            parse("2026-01-31T09:30:00"),
            parse("2026-01-31T09:30:00.1239"),
            parse("2026-01-31T09:30:00Z"),
            parse("2026-01-31T09:30:00+01:00"),
            parse("next tuesday"),
            parse("2026-02-30"),
            parse("2026-01-31T25:00:00"),
            parse("2026-01-31 09:30"),
            parse("+2026-01-31"),
            parse(""),
        ];
        assert_text(
            &lines.join("\n"),
            "
            [2026-01-31] => 2026-01-31T05:00:00Z
            [2026-01-31T09:30:00] => 2026-01-31T14:30:00Z
            [2026-01-31T09:30:00.1239] => 2026-01-31T14:30:00.123Z
            [2026-01-31T09:30:00Z] => 2026-01-31T09:30:00Z
            [2026-01-31T09:30:00+01:00] => 2026-01-31T08:30:00Z
            [next tuesday] => error: `next tuesday` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: expected it to begin with a `YYYY-MM-DD` date
            [2026-02-30] => error: `2026-02-30` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: no such date (input is out of range)
            [2026-01-31T25:00:00] => error: `2026-01-31T25:00:00` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: no such local date-time (input is out of range)
            [2026-01-31 09:30] => error: `2026-01-31 09:30` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: not a local date-time, nor an RFC 3339 instant with offset (premature end of input)
            [+2026-01-31] => error: `+2026-01-31` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: expected it to begin with a `YYYY-MM-DD` date
            [] => error: `` is not a local date (`YYYY-MM-DD`), local date-time (`YYYY-MM-DDThh:mm:ss`) or RFC 3339 instant: expected it to begin with a `YYYY-MM-DD` date
            ",
        );
        assert_eq!(cal.timezone(), "America/New_York");
    }

    /// Law: periods tile time (each ends where the next starts), every non-empty period is found
    /// by `period_containing` at its first and last millisecond, and a whole full period is worth
    /// 1 in both modes.
    #[test]
    fn periods_tile_time() {
        let zones = [
            "UTC",
            "America/New_York",
            "Europe/London",
            "Australia/Lord_Howe",
            "Pacific/Apia",
        ];
        let intervals = [
            every(IntervalUnit::Day, 1),
            every(IntervalUnit::Week, 2),
            every(IntervalUnit::Month, 1),
            every(IntervalUnit::Quarter, 1),
            every(IntervalUnit::Year, 1),
        ];
        let starts = [
            ("2011-12-20T01:30:00", Some("2011-12-31")),
            ("2026-10-31T23:30:00Z", None),
            ("2028-02-29", Some("2027-01-31T02:30:00")),
        ];
        for zone in zones {
            for interval in intervals {
                for (start, anchor) in starts {
                    let cal = calendar(zone, interval, start, anchor);
                    let context = format!("{zone} {interval:?} {start} {anchor:?}");
                    let mut previous_end = cal.start();
                    for index in 0..40 {
                        let period = cal.period(index).expect("period");
                        assert_eq!(period.start, previous_end, "{context} {index}");
                        assert!(period.cycle_start <= period.start, "{context} {index}");
                        assert!(period.start <= period.end, "{context} {index}");
                        previous_end = period.end;
                        if period.start == period.end {
                            continue;
                        }
                        for instant in [period.start, Timestamp(period.end.0 - 1)] {
                            assert_eq!(cal.period_containing(instant), Ok(period), "{context}");
                        }
                        // Seconds: a whole period is 1 unless shortened. Days: a shortened
                        // first period is floored to local days (with a 02:30 anchor, a first
                        // period from 00:00 to 02:30 is worth 0 days, one from 01:30 to the next
                        // midnight boundary a full day).
                        let seconds =
                            cal.fraction(ProrationMode::Seconds, &period, period.start, period.end);
                        let shortened = period.start != period.cycle_start;
                        assert_eq!(seconds == Decimal::ONE, !shortened, "{context} {index}");
                        let days =
                            cal.fraction(ProrationMode::Days, &period, period.start, period.end);
                        assert!(
                            days >= Decimal::ZERO && days <= Decimal::ONE,
                            "{context} {index}"
                        );
                        assert!(shortened || days == Decimal::ONE, "{context} {index}");
                    }
                }
            }
        }
    }
}
