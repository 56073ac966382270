//! Operator reports and the console's customer search, computed from the store's existing
//! reads (no table of their own): revenue by plan and by month and the top customers from the
//! final invoices, accounts receivable aging from the open invoices' books, usage by metric
//! over time from the events through the engine's `Aggregator`. Each report is JSON (`/v1/reports/NAME`) and CSV (`/v1/reports/NAME.csv`,
//! RFC 4180: CRLF lines, a field with a comma, quote, line break or edge space quoted and its
//! quotes doubled).
//!
//! Architecture Invariant: amounts are summed as `rust_decimal::Decimal` from the invoices'
//! decimal strings, never as floats, and only within one currency (a report row names its
//! currency; amounts of two currencies are never added).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use ratecard_engine::invoice::Invoice;
use ratecard_engine::meter::{Aggregator, MeteredUsage, Window};
use ratecard_engine::plan::{Aggregation, Recurrence};
use ratecard_engine::rate::RateError;
use ratecard_engine::usage::{Event, Timestamp};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::Serialize;

use super::api::{Api, error, json_response, server_error};
use super::openapi::{Body, Operation, schema};
use super::{PlanRef, Server, ServerError};

const DAY_MS: i64 = 86_400_000;

/// The longest usage report: a year and a day.
pub const MAX_USAGE_DAYS: i64 = 366;

/// `GET /v1/reports/revenue`: final invoices' totals by month and plan, per currency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct RevenueReport {
    /// By (month, plan, currency), in that order.
    pub rows: Vec<RevenueRow>,
    /// By (plan, currency).
    pub by_plan: Vec<RevenueRow>,
    /// By (month, currency).
    pub by_month: Vec<RevenueRow>,
    /// By currency.
    pub totals: Vec<RevenueRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RevenueRow {
    /// `2026-11`: the month the invoiced period starts in, in the customer's timezone (absent
    /// in `by_plan` and `totals`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// Absent in `by_month` and `totals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    pub currency: String,
    pub invoices: u64,
    /// The sum of the invoices' totals, exact.
    pub total: String,
}

/// `GET /v1/reports/top-customers`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct TopCustomers {
    /// By total, largest first (within a currency; then by customer id).
    pub customers: Vec<CustomerRevenue>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct CustomerRevenue {
    pub customer_id: String,
    pub currency: String,
    pub invoices: u64,
    pub total: String,
}

/// `GET /v1/reports/usage`: per UTC day and metric, the day's usage summed over customers.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct UsageReport {
    /// The first day (UTC).
    pub from: String,
    /// The last day (UTC, included).
    pub to: String,
    /// The metrics reported (additive ones: `count`, `sum`), by code.
    pub metrics: Vec<ReportedMetric>,
    /// Metrics whose days do not add up (max, unique count, levels): not reported.
    pub omitted: Vec<String>,
    /// By day, then metric code; days without usage included (quantity `0`).
    pub rows: Vec<UsageRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ReportedMetric {
    pub code: String,
    pub unit: String,
    pub aggregation: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct UsageRow {
    pub date: String,
    pub metric: String,
    pub quantity: String,
}

/// `GET /v1/customers`: the customers matching a search.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerSummary>,
    /// How many matched (the list stops at `limit`).
    pub matched: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct CustomerSummary {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRef>,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_start: Option<String>,
}

/// `GET /v1/reports/aging`: accounts receivable aging, what open invoices still owe by how
/// long past their due date, per customer and currency.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct AgingReport {
    /// The instant the ages are counted at (the server's clock), RFC 3339.
    pub as_of: String,
    /// The buckets' names, in the order of each row's `buckets`: `current` (not yet due),
    /// `1-30`, `31-60`, `61-90`, `90+` (days past the due date, a started day counted whole).
    pub bucket_names: Vec<String>,
    /// By (customer, currency): customers with a balance due, by id.
    pub customers: Vec<AgingRow>,
    /// By currency.
    pub totals: Vec<AgingRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct AgingRow {
    /// Absent in `totals`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub currency: String,
    /// Open invoices with a balance.
    pub invoices: u64,
    /// The balances in each bucket, exact, in `bucket_names` order.
    pub buckets: Vec<String>,
    /// The sum of the buckets.
    pub total: String,
}

/// The aging buckets: a name and the most days past due it holds (`None`: no bound).
pub const AGING_BUCKETS: [(&str, Option<i64>); 5] = [
    ("current", Some(0)),
    ("1-30", Some(30)),
    ("31-60", Some(60)),
    ("61-90", Some(90)),
    ("90+", None),
];

/// Which of [`AGING_BUCKETS`] an invoice due at `due_at` falls in at `now`: not yet due (or
/// due this very instant) is `current`; then days past due, a started day counted whole (an
/// hour late is 1 day, 30 days and an hour is 31).
pub fn aging_bucket(due_at: i64, now: i64) -> usize {
    let late = now.saturating_sub(due_at);
    let days = if late <= 0 {
        0
    } else {
        (late - 1) / DAY_MS + 1
    };
    AGING_BUCKETS
        .iter()
        .position(|(_, most)| most.is_none_or(|most| days <= most))
        .unwrap_or(AGING_BUCKETS.len() - 1)
}

/// Amounts per key, summed exactly.
#[derive(Default)]
struct Sums<K: Ord> {
    sums: BTreeMap<K, (u64, Decimal)>,
}

impl<K: Ord> Sums<K> {
    fn add(&mut self, key: K, amount: Decimal) -> Result<(), ServerError> {
        let entry = self.sums.entry(key).or_insert((0, Decimal::ZERO));
        entry.0 += 1;
        entry.1 = entry
            .1
            .checked_add(amount)
            .ok_or_else(|| ServerError::Invalid("a report's sum overflows".to_owned()))?;
        Ok(())
    }
}

/// The final invoices, each with what the reports read of it.
struct Billed {
    customer_id: String,
    plan_id: String,
    month: String,
    currency: String,
    total: Decimal,
}

impl Server {
    async fn billed(&self) -> Result<Vec<Billed>, ServerError> {
        let mut billed = Vec::new();
        for stored in self.store.invoices().await? {
            let invoice: Invoice = serde_json::from_str(&stored.body).map_err(|e| {
                ServerError::Invalid(format!("stored invoice {}: {e}", stored.number))
            })?;
            billed.push(Billed {
                customer_id: stored.customer_id,
                plan_id: invoice.plan_id,
                month: invoice.period.start.get(..7).unwrap_or_default().to_owned(),
                currency: invoice.currency,
                total: invoice.total.0,
            });
        }
        Ok(billed)
    }

    /// Revenue by month and plan, by plan, by month and in total, per currency.
    pub async fn revenue_report(&self) -> Result<RevenueReport, ServerError> {
        let mut rows = Sums::default();
        let mut by_plan = Sums::default();
        let mut by_month = Sums::default();
        let mut totals = Sums::default();
        for b in self.billed().await? {
            rows.add(
                (b.month.clone(), b.plan_id.clone(), b.currency.clone()),
                b.total,
            )?;
            by_plan.add((b.plan_id, b.currency.clone()), b.total)?;
            by_month.add((b.month, b.currency.clone()), b.total)?;
            totals.add(b.currency, b.total)?;
        }
        let row = |month: Option<String>, plan_id: Option<String>, currency: String, n, total| {
            RevenueRow {
                month,
                plan_id,
                currency,
                invoices: n,
                total: total_text(total),
            }
        };
        Ok(RevenueReport {
            rows: rows
                .sums
                .into_iter()
                .map(|((m, p, c), (n, t))| row(Some(m), Some(p), c, n, t))
                .collect(),
            by_plan: by_plan
                .sums
                .into_iter()
                .map(|((p, c), (n, t))| row(None, Some(p), c, n, t))
                .collect(),
            by_month: by_month
                .sums
                .into_iter()
                .map(|((m, c), (n, t))| row(Some(m), None, c, n, t))
                .collect(),
            totals: totals
                .sums
                .into_iter()
                .map(|(c, (n, t))| row(None, None, c, n, t))
                .collect(),
        })
    }

    /// The `limit` customers with the largest invoiced totals (per currency).
    pub async fn top_customers(&self, limit: usize) -> Result<TopCustomers, ServerError> {
        let mut sums = Sums::default();
        for b in self.billed().await? {
            sums.add((b.customer_id, b.currency), b.total)?;
        }
        let mut customers: Vec<(String, String, u64, Decimal)> = sums
            .sums
            .into_iter()
            .map(|((customer, currency), (n, total))| (customer, currency, n, total))
            .collect();
        customers.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
        customers.truncate(limit);
        Ok(TopCustomers {
            customers: customers
                .into_iter()
                .map(|(customer_id, currency, invoices, total)| CustomerRevenue {
                    customer_id,
                    currency,
                    invoices,
                    total: total_text(total),
                })
                .collect(),
        })
    }

    /// Accounts receivable aging at the server's now: every open invoice with a balance, its
    /// balance in the bucket of its days past due (see [`aging_bucket`]). Paid and void
    /// invoices owe nothing; uncollectible ones are written off, so neither is aged.
    pub async fn aging_report(&self) -> Result<AgingReport, ServerError> {
        let now = self.now();
        let overflow = || ServerError::Invalid("the aging report's sum overflows".to_owned());
        // (customer, currency) → (invoices, minor units, balance per bucket).
        type Aged = (u64, u32, [Decimal; AGING_BUCKETS.len()]);
        let mut customers: BTreeMap<(String, String), Aged> = BTreeMap::new();
        let mut totals: BTreeMap<String, Aged> = BTreeMap::new();
        for (_, book) in self
            .invoice_books(Some(super::collect::InvoiceState::Open), None)
            .await?
        {
            let balance = book.summary().map_err(|_| overflow())?.balance;
            if balance <= Decimal::ZERO {
                continue;
            }
            let invoice = &book.invoice;
            let bucket = aging_bucket(invoice.due_at, now);
            for entry in [
                customers
                    .entry((invoice.customer_id.clone(), invoice.currency.clone()))
                    .or_insert((0, invoice.minor_units, Default::default())),
                totals.entry(invoice.currency.clone()).or_insert((
                    0,
                    invoice.minor_units,
                    Default::default(),
                )),
            ] {
                entry.0 += 1;
                entry.2[bucket] = entry.2[bucket].checked_add(balance).ok_or_else(overflow)?;
            }
        }
        let row = |customer_id: Option<String>, currency: String, aged: Aged| {
            let (invoices, minor_units, buckets) = aged;
            let total = buckets
                .iter()
                .try_fold(Decimal::ZERO, |sum, b| sum.checked_add(*b))
                .ok_or_else(overflow)?;
            let text = |d: Decimal| super::collect::format_amount(d, minor_units);
            Ok::<_, ServerError>(AgingRow {
                customer_id,
                currency,
                invoices,
                buckets: buckets.iter().map(|b| text(*b)).collect(),
                total: text(total),
            })
        };
        Ok(AgingReport {
            as_of: Timestamp(now).to_rfc3339(),
            bucket_names: AGING_BUCKETS.iter().map(|(n, _)| (*n).to_owned()).collect(),
            customers: customers
                .into_iter()
                .map(|((customer, currency), aged)| row(Some(customer), currency, aged))
                .collect::<Result<_, _>>()?,
            totals: totals
                .into_iter()
                .map(|(currency, aged)| row(None, currency, aged))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Usage per UTC day from `from` to `to` (both included, Unix ms of their midnights):
    /// each subscribed customer's events through an aggregator of the plan they are on now.
    pub async fn usage_report(&self, from: i64, to: i64) -> Result<UsageReport, ServerError> {
        let day_ends: Vec<Timestamp> = (1..=(to - from) / DAY_MS + 1)
            .map(|k| Timestamp(from + k * DAY_MS))
            .collect();
        let end = from + (day_ends.len() as i64) * DAY_MS;
        let mut metrics: BTreeMap<String, ReportedMetric> = BTreeMap::new();
        let mut omitted: Vec<String> = Vec::new();
        let mut sums: BTreeMap<(i64, String), Decimal> = BTreeMap::new();
        for stored in self.store.customers().await? {
            let Some((plan_id, version)) = stored.plan.clone() else {
                continue;
            };
            let plan_ref = PlanRef {
                id: plan_id,
                version,
            };
            self.ensure_plan(&plan_ref).await?;
            let prepared = self.plan(&plan_ref)?;
            let plan = prepared.plan();
            for metric in &plan.metrics {
                let code = metric.code.clone();
                if additive(&metric.aggregation, metric.recurrence) {
                    metrics.entry(code).or_insert_with(|| ReportedMetric {
                        code: metric.code.clone(),
                        unit: metric.unit.clone(),
                        aggregation: aggregation_type(&metric.aggregation),
                    });
                } else if !omitted.contains(&code) {
                    omitted.push(code);
                }
            }
            let events = sorted_events(&self.store.events_in(&stored.id, from, end).await?)?;
            if events.is_empty() {
                continue;
            }
            let aggregator = Aggregator::new(
                &plan.metrics,
                &plan.charges,
                Window {
                    start: Timestamp(from),
                    end: Timestamp(end),
                },
                Timestamp(from),
                &BTreeMap::new(),
                self.plugins,
            )
            .map_err(RateError::from)?;
            let Some(days) = totals_at_day_ends(aggregator, &events, &day_ends)? else {
                continue;
            };
            let mut before: BTreeMap<String, Decimal> = BTreeMap::new();
            for (day_idx, totals) in days.into_iter().enumerate() {
                for metric in &plan.metrics {
                    if !additive(&metric.aggregation, metric.recurrence) {
                        continue;
                    }
                    let now = totals.get(&metric.code).copied().unwrap_or_default();
                    let then = before.get(&metric.code).copied().unwrap_or_default();
                    let sum = sums
                        .entry((day_idx as i64, metric.code.clone()))
                        .or_default();
                    *sum = sum.checked_add(now - then).ok_or_else(|| {
                        ServerError::Invalid("a report's sum overflows".to_owned())
                    })?;
                }
                before = totals;
            }
        }
        omitted.retain(|code| !metrics.contains_key(code));
        omitted.sort();
        let mut rows = Vec::new();
        for day_idx in 0..day_ends.len() as i64 {
            for code in metrics.keys() {
                let quantity = sums
                    .get(&(day_idx, code.clone()))
                    .copied()
                    .unwrap_or_default();
                rows.push(UsageRow {
                    date: utc_date(from + day_idx * DAY_MS),
                    metric: code.clone(),
                    quantity: quantity.normalize().to_string(),
                });
            }
        }
        Ok(UsageReport {
            from: utc_date(from),
            to: utc_date(to),
            metrics: metrics.into_values().collect(),
            omitted,
            rows,
        })
    }

    /// The customers whose id contains `search` (case-insensitive; every customer for an empty
    /// search), by id, at most `limit`.
    pub async fn search_customers(
        &self,
        search: &str,
        limit: usize,
    ) -> Result<CustomerList, ServerError> {
        let needle = search.trim().to_lowercase();
        let mut customers = Vec::new();
        let mut matched = 0;
        for stored in self.store.customers().await? {
            if !stored.id.to_lowercase().contains(&needle) {
                continue;
            }
            matched += 1;
            if customers.len() >= limit {
                continue;
            }
            let record = super::record_of(stored)?;
            customers.push(CustomerSummary {
                timezone: record.setup.timezone.unwrap_or_else(|| "UTC".to_owned()),
                subscription_start: record.setup.subscription.map(|s| s.start),
                plan: record.plan,
                id: record.id,
            });
        }
        Ok(CustomerList { customers, matched })
    }
}

/// An exact sum as text: its scale kept (`"98.80"`), as the invoices write amounts.
fn total_text(total: Decimal) -> String {
    total.to_string()
}

/// Whether a metric's days add up to its period (`count`, `sum`, not carried over).
pub(super) fn additive(aggregation: &Aggregation, recurrence: Recurrence) -> bool {
    recurrence != Recurrence::CarriedOver
        && matches!(aggregation, Aggregation::Count | Aggregation::Sum { .. })
}

/// The aggregation's `type` as the plan writes it.
pub(super) fn aggregation_type(aggregation: &Aggregation) -> String {
    serde_json::to_value(aggregation)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

/// Stored events (JSON lines) parsed, in timestamp order (stable: order of arrival within an
/// instant).
pub(super) fn sorted_events(lines: &[String]) -> Result<Vec<Event<'static>>, ServerError> {
    let mut events = Vec::with_capacity(lines.len());
    for (idx, line) in lines.iter().enumerate() {
        let event = Event::from_json_line(line.as_bytes())
            .map_err(|e| ServerError::Invalid(format!("stored event {idx}: {e}")))?;
        events.push(event.into_owned());
    }
    events.sort_by_key(|e| e.timestamp);
    Ok(events)
}

/// Metric code → its quantity over all groups.
pub(super) fn metric_totals(metered: &MeteredUsage) -> BTreeMap<String, Decimal> {
    metered
        .metrics
        .iter()
        .map(|(code, groups)| (code.clone(), groups.iter().map(|g| g.quantity).sum()))
        .collect()
}

/// Pushes `events` (in timestamp order) and reads each metric's total at each of `day_ends`
/// (increasing): one aggregator, one pass. `None` for a plan with a plugin metric, whose value
/// a plugin gives only at the end.
/// [`totals_at_day_ends`] for an aggregator with no snapshot (a plugin's metric holds its own
/// state): each day end runs a fresh aggregator from `make` over the events before it, to its
/// finish. Days × events pushes: for the plans whose metrics need it.
pub(super) fn totals_at_day_ends_replayed<'p>(
    make: impl Fn() -> Result<Aggregator<'p>, ServerError>,
    events: &[Event<'_>],
    day_ends: &[Timestamp],
) -> Result<Vec<BTreeMap<String, Decimal>>, ServerError> {
    let mut days = Vec::with_capacity(day_ends.len());
    for &day_end in day_ends {
        let mut aggregator = make()?;
        for event in events.iter().take_while(|e| e.timestamp < day_end) {
            // A refused event changes nothing (the invoice notes it).
            let _outcome = aggregator.push(event);
        }
        days.push(metric_totals(
            &aggregator.finish().map_err(RateError::from)?,
        ));
    }
    Ok(days)
}

pub(super) fn totals_at_day_ends(
    mut aggregator: Aggregator<'_>,
    events: &[Event<'_>],
    day_ends: &[Timestamp],
) -> Result<Option<Vec<BTreeMap<String, Decimal>>>, ServerError> {
    let mut pushed = 0;
    let mut days = Vec::with_capacity(day_ends.len());
    for &day_end in day_ends {
        while pushed < events.len() && events[pushed].timestamp < day_end {
            // A refused event changes nothing (the invoice notes it).
            let _outcome = aggregator.push(&events[pushed]);
            pushed += 1;
        }
        let Some(metered) = aggregator.snapshot() else {
            return Ok(None);
        };
        days.push(metric_totals(&metered.map_err(RateError::from)?));
    }
    Ok(Some(days))
}

/// `YYYY-MM-DD` of a UTC instant.
fn utc_date(millis: i64) -> String {
    Timestamp(millis)
        .to_rfc3339()
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

/// A UTC date's midnight in Unix ms, or `None`.
fn parse_utc_date(text: &str) -> Option<i64> {
    if text.len() != 10 {
        return None;
    }
    Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z"))
        .ok()
        .map(|t| t.0)
}

/// A query parameter, percent-decoded (`+` is a space); `None` when absent.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })?;
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((high, low)), _) => {
                // Two hex digits make one byte (< 256).
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote, a line break or an edge
/// space, its quotes doubled.
pub fn csv_field(text: &str) -> String {
    let needs_quotes =
        text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') || text.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A CSV document: the header and the rows, CRLF after every line.
pub fn csv<'a>(header: &[&str], rows: impl IntoIterator<Item = Vec<String>> + 'a) -> String {
    let mut out = String::new();
    let line = |out: &mut String, fields: &mut dyn Iterator<Item = String>| {
        let fields: Vec<String> = fields.map(|f| csv_field(&f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, &mut header.iter().map(|h| (*h).to_owned()));
    for row in rows {
        line(&mut out, &mut row.into_iter());
    }
    out
}

fn csv_response(name: &'static str, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

fn aging_csv(report: &AgingReport) -> String {
    let mut header = vec!["customer_id", "currency", "invoices"];
    header.extend(report.bucket_names.iter().map(String::as_str));
    header.push("total");
    csv(
        &header,
        report.customers.iter().map(|r| {
            let mut fields = vec![
                r.customer_id.clone().unwrap_or_default(),
                r.currency.clone(),
                r.invoices.to_string(),
            ];
            fields.extend(r.buckets.iter().cloned());
            fields.push(r.total.clone());
            fields
        }),
    )
}

fn revenue_csv(report: &RevenueReport) -> String {
    csv(
        &["month", "plan_id", "currency", "invoices", "total"],
        report.rows.iter().map(|r| {
            vec![
                r.month.clone().unwrap_or_default(),
                r.plan_id.clone().unwrap_or_default(),
                r.currency.clone(),
                r.invoices.to_string(),
                r.total.clone(),
            ]
        }),
    )
}

fn top_customers_csv(report: &TopCustomers) -> String {
    csv(
        &["customer_id", "currency", "invoices", "total"],
        report.customers.iter().map(|c| {
            vec![
                c.customer_id.clone(),
                c.currency.clone(),
                c.invoices.to_string(),
                c.total.clone(),
            ]
        }),
    )
}

fn usage_csv(report: &UsageReport) -> String {
    let units: BTreeMap<&str, &str> = report
        .metrics
        .iter()
        .map(|m| (m.code.as_str(), m.unit.as_str()))
        .collect();
    csv(
        &["date", "metric", "unit", "quantity"],
        report.rows.iter().map(|r| {
            vec![
                r.date.clone(),
                r.metric.clone(),
                units
                    .get(r.metric.as_str())
                    .copied()
                    .unwrap_or("")
                    .to_owned(),
                r.quantity.clone(),
            ]
        }),
    )
}

/// The reports' and the customer search's operations (see `api::operations`).
pub(super) fn operations() -> Vec<(Operation, MethodRouter<Api>)> {
    use super::openapi::Body::{Csv, Json};
    let op = |path, id, summary, response| Operation {
        method: "get",
        path,
        id,
        summary,
        operator: true,
        query: &[],
        request: Body::None,
        response,
    };
    const LIMIT: &[(&str, &str, bool)] = &[("limit", "how many (1 to 1000, default 10)", false)];
    const RANGE: &[(&str, &str, bool)] = &[
        (
            "from",
            "the first UTC day, `2026-11-01` (default: the first of this month)",
            false,
        ),
        (
            "to",
            "the last UTC day, included (default: today); at most 366 days",
            false,
        ),
    ];
    vec![
        (
            Operation {
                query: &[
                    ("search", "part of the customer id (any case)", false),
                    ("limit", "how many (1 to 1000, default 100)", false),
                ],
                ..op(
                    "/v1/customers",
                    "listCustomers",
                    "The customers whose id contains the search, by id",
                    Json(schema::<CustomerList>),
                )
            },
            get(list_customers),
        ),
        (
            op(
                "/v1/reports/revenue",
                "revenueReport",
                "Final invoices' totals by month and plan, by plan, by month and in total, per currency (exact decimal sums)",
                Json(schema::<RevenueReport>),
            ),
            get(revenue),
        ),
        (
            op(
                "/v1/reports/revenue.csv",
                "revenueReportCsv",
                "The revenue report's rows (month, plan, currency) as CSV",
                Csv,
            ),
            get(revenue_as_csv),
        ),
        (
            Operation {
                query: LIMIT,
                ..op(
                    "/v1/reports/top-customers",
                    "topCustomersReport",
                    "The customers with the largest invoiced totals",
                    Json(schema::<TopCustomers>),
                )
            },
            get(top),
        ),
        (
            Operation {
                query: LIMIT,
                ..op(
                    "/v1/reports/top-customers.csv",
                    "topCustomersReportCsv",
                    "The top customers as CSV",
                    Csv,
                )
            },
            get(top_as_csv),
        ),
        (
            Operation {
                query: RANGE,
                ..op(
                    "/v1/reports/usage",
                    "usageReport",
                    "Usage per UTC day and metric (count and sum metrics), summed over customers",
                    Json(schema::<UsageReport>),
                )
            },
            get(usage),
        ),
        (
            Operation {
                query: RANGE,
                ..op(
                    "/v1/reports/usage.csv",
                    "usageReportCsv",
                    "The usage report as CSV",
                    Csv,
                )
            },
            get(usage_as_csv),
        ),
        (
            op(
                "/v1/reports/aging",
                "agingReport",
                "Accounts receivable aging: open invoices' balances by days past due (current, 1-30, 31-60, 61-90, 90+), per customer and currency",
                Json(schema::<AgingReport>),
            ),
            get(aging),
        ),
        (
            op(
                "/v1/reports/aging.csv",
                "agingReportCsv",
                "The aging report's customer rows as CSV",
                Csv,
            ),
            get(aging_as_csv),
        ),
    ]
}

/// `?limit=` between 1 and 1000, or the answer naming what is wrong.
fn limit_of(query: Option<&str>, default: usize) -> Result<usize, Response> {
    match query_value(query, "limit") {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!("limit: `{text}` is not a number from 1 to 1000"),
            )),
        },
    }
}

async fn list_customers(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let limit = match limit_of(query.as_deref(), 100) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let search = query_value(query.as_deref(), "search").unwrap_or_default();
    match api.server.search_customers(&search, limit).await {
        Ok(list) => json_response(StatusCode::OK, &list),
        Err(failure) => server_error(failure),
    }
}

async fn aging(State(api): State<Api>) -> Response {
    match api.server.aging_report().await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(failure) => server_error(failure),
    }
}

async fn aging_as_csv(State(api): State<Api>) -> Response {
    match api.server.aging_report().await {
        Ok(report) => csv_response("aging.csv", aging_csv(&report)),
        Err(failure) => server_error(failure),
    }
}

async fn revenue(State(api): State<Api>) -> Response {
    match api.server.revenue_report().await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(failure) => server_error(failure),
    }
}

async fn revenue_as_csv(State(api): State<Api>) -> Response {
    match api.server.revenue_report().await {
        Ok(report) => csv_response("revenue.csv", revenue_csv(&report)),
        Err(failure) => server_error(failure),
    }
}

async fn top_report(api: &Api, query: Option<&str>) -> Result<TopCustomers, Response> {
    let limit = limit_of(query, 10)?;
    api.server.top_customers(limit).await.map_err(server_error)
}

async fn top(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    match top_report(&api, query.as_deref()).await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(response) => response,
    }
}

async fn top_as_csv(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    match top_report(&api, query.as_deref()).await {
        Ok(report) => csv_response("top-customers.csv", top_customers_csv(&report)),
        Err(response) => response,
    }
}

/// `?from=&to=` as UTC midnights, checked, or the answer naming what is wrong.
fn range_of(api: &Api, query: Option<&str>) -> Result<(i64, i64), Response> {
    let now = api.server.now();
    let today = now - now.rem_euclid(DAY_MS);
    let bad = |name: &str, text: &str| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("{name}: `{text}` is not a date (YYYY-MM-DD)"),
        )
    };
    let to = match query_value(query, "to") {
        Some(text) => parse_utc_date(&text).ok_or_else(|| bad("to", &text))?,
        None => today,
    };
    let from = match query_value(query, "from") {
        Some(text) => parse_utc_date(&text).ok_or_else(|| bad("from", &text))?,
        None => {
            let month = utc_date(to);
            parse_utc_date(&format!("{}-01", &month[..7])).unwrap_or(to)
        }
    };
    if from > to {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("from: {} is after to ({})", utc_date(from), utc_date(to)),
        ));
    }
    if (to - from) / DAY_MS + 1 > MAX_USAGE_DAYS {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("to: a usage report covers at most {MAX_USAGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

async fn usage_report(api: &Api, query: Option<&str>) -> Result<UsageReport, Response> {
    let (from, to) = range_of(api, query)?;
    api.server
        .usage_report(from, to)
        .await
        .map_err(server_error)
}

async fn usage(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    match usage_report(&api, query.as_deref()).await {
        Ok(report) => json_response(StatusCode::OK, &report),
        Err(response) => response,
    }
}

async fn usage_as_csv(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    match usage_report(&api, query.as_deref()).await {
        Ok(report) => csv_response("usage.csv", usage_csv(&report)),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoices_age_by_started_days_past_due() {
        let due = 1_000 * DAY_MS;
        let name = |now: i64| AGING_BUCKETS[aging_bucket(due, now)].0;
        assert_eq!(name(due - 1), "current");
        assert_eq!(name(due), "current", "due this instant is not late yet");
        assert_eq!(name(due + 1), "1-30", "a millisecond late is a started day");
        assert_eq!(name(due + 30 * DAY_MS), "1-30");
        assert_eq!(name(due + 30 * DAY_MS + 1), "31-60");
        assert_eq!(name(due + 60 * DAY_MS), "31-60");
        assert_eq!(name(due + 60 * DAY_MS + 1), "61-90");
        assert_eq!(name(due + 90 * DAY_MS), "61-90");
        assert_eq!(name(due + 90 * DAY_MS + 1), "90+");
        assert_eq!(name(i64::MAX), "90+");
        assert_eq!(name(i64::MIN), "current");
    }

    #[test]
    fn csv_fields_are_quoted_when_they_need_it() {
        assert_eq!(csv_field("acme"), "acme");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" padded"), "\" padded\"");
        assert_eq!(
            csv(&["a", "b"], [vec!["1".to_owned(), "x,y".to_owned()]]),
            "a,b\r\n1,\"x,y\"\r\n"
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            query_value(Some("search=ac%20me&limit=5"), "search").as_deref(),
            Some("ac me")
        );
        assert_eq!(
            query_value(Some("search=a+b"), "search").as_deref(),
            Some("a b")
        );
        assert_eq!(
            query_value(Some("search=100%"), "search").as_deref(),
            Some("100%")
        );
        assert_eq!(query_value(Some("x=1"), "search"), None);
        assert_eq!(query_value(None, "search"), None);
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(parse_utc_date("2026-11-01"), Some(1_793_491_200_000));
        assert_eq!(utc_date(1_793_491_200_000 + 5), "2026-11-01");
        assert_eq!(parse_utc_date("2026-13-01"), None);
        assert_eq!(parse_utc_date("yesterday"), None);
    }
}
