//! Rating: a plan and a customer's usage for one period in, an [`Invoice`] out.
//!
//! The order of an invoice is fixed and documented:
//! 1. lines, one per charge (per group for grouped metrics), in plan order; flat fees prorated for
//!    the part of the period that is billed (after a trial, after a mid-period plan change);
//! 2. per-charge minimum / maximum adjustments, then the plan's minimum commitment true-up line;
//! 3. `subtotal` = sum of lines (rounded lines under `line` rounding, the rounded exact sum under
//!    `invoice` rounding);
//! 4. discounts in plan order, each limited to what is left, never below zero;
//! 5. taxes on the discounted subtotal (exclusive taxes are added, inclusive ones extracted);
//! 6. prepaid credits, plan credits first then the customer's, until the total is zero.
//!
//! Discount, tax and credit amounts are always rounded to the currency's minor units with the
//! plan's rounding mode.
//!
//! A split line of the period (`Usage::split_line`, progressive billing) rates the cumulative
//! usage so far and adds, per usage charge, a line taking off what the period's earlier lines
//! billed ([`LineOrigin::BilledBefore`]); minimums, arrears fees and volume charges wait for
//! the last line, advance fees are billed on the first.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::decimal::{Amount, Dec, normalized_text};
use crate::invoice::{
    AppliedCredit, AppliedDiscount, AppliedTax, BreakdownRow, Invoice, Line, LineOrigin, PeriodInfo,
};
use crate::meter::{EventError, GroupUsage, MeteredUsage, Outcome, Router};
use crate::money::{Currency, RoundingLevel};
use crate::period::{BillingPeriod, Calendar, PeriodError};
use crate::plan::{
    Aggregation, Charge, ChargeMaximum, ChargeMinimum, FeeTiming, GroupKey, Metric, NegativeValues,
    Plan, PriceModel, ProrationMode, TierConvention, UsageProration, ZeroUsage,
};
use crate::plugin::{GroupedQuantity, PluginError, PluginHost, PriceRequest};
use crate::price::{self, AmountOnly, Overflow, PercentageTerms, Priced, Rows};
use crate::rater::PeriodRater;
use crate::usage::{Customer, PeriodSelector, QuantityInput, Timestamp, Usage};
use crate::validate::{Issue, validate_plan};

/// Why a quote could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// The plan has validation errors (all of them are listed).
    #[error("the plan is invalid: {}", join_issues(.0))]
    InvalidPlan(Vec<Issue>),
    /// The usage document is wrong at a JSON path.
    #[error("{path}: {message}")]
    InvalidUsage { path: String, message: String },
    /// The billing period could not be computed. (Its fields are not named `source`: the
    /// message already says it, and a `source` would make `{:#}` say it twice.)
    #[error("{path}: {error}")]
    Period { path: String, error: PeriodError },
    /// Aggregating usage failed as a whole (a plugin metric, an overflowing total).
    #[error(transparent)]
    Aggregate(#[from] crate::meter::AggregateError),
    /// A charge cannot be priced with the usage given.
    #[error("charge `{charge}`: {message}")]
    Charge { charge: String, message: String },
    /// A custom price plugin failed.
    #[error("charge `{charge}`: {error}")]
    Plugin { charge: String, error: PluginError },
    /// An amount does not fit in a decimal.
    #[error("{context}: amount overflow")]
    Overflow { context: String },
}

/// What kind of error a [`RateError`] is: a stable identifier for tooling (the browser
/// binding's `Error.code`, the golden vectors' `error.code`), serialized in snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A document could not be read (not a `RateError`: see [`json::parse`](crate::json::parse)).
    InvalidJson,
    InvalidPlan,
    InvalidUsage,
    Period,
    Aggregate,
    Charge,
    Plugin,
    Overflow,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidPlan => "invalid_plan",
            ErrorCode::InvalidUsage => "invalid_usage",
            ErrorCode::Period => "period",
            ErrorCode::Aggregate => "aggregate",
            ErrorCode::Charge => "charge",
            ErrorCode::Plugin => "plugin",
            ErrorCode::Overflow => "overflow",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RateError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RateError::InvalidPlan(_) => ErrorCode::InvalidPlan,
            RateError::InvalidUsage { .. } => ErrorCode::InvalidUsage,
            RateError::Period { .. } => ErrorCode::Period,
            RateError::Aggregate(_) => ErrorCode::Aggregate,
            RateError::Charge { .. } => ErrorCode::Charge,
            RateError::Plugin { .. } => ErrorCode::Plugin,
            RateError::Overflow { .. } => ErrorCode::Overflow,
        }
    }

    /// The JSON path the error is about, when it is about one value: of the usage document
    /// (`$.quantities.calls`, `$.subscription.start`) or, for an invalid plan, of its first
    /// error (every error is in [`RateError::InvalidPlan`]'s list, each with its path).
    pub fn path(&self) -> Option<&str> {
        match self {
            RateError::InvalidPlan(issues) => issues.first().map(|issue| issue.path.as_str()),
            RateError::InvalidUsage { path, .. } | RateError::Period { path, .. } => Some(path),
            RateError::Aggregate(_)
            | RateError::Charge { .. }
            | RateError::Plugin { .. }
            | RateError::Overflow { .. } => None,
        }
    }
}

fn join_issues(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn overflow(context: impl Into<String>) -> impl FnOnce(Overflow) -> RateError {
    let context = context.into();
    move |_| RateError::Overflow { context }
}

pub(crate) fn usage_error(path: impl Into<String>, message: impl Into<String>) -> RateError {
    RateError::InvalidUsage {
        path: path.into(),
        message: message.into(),
    }
}

/// The calendar and period of a quote, resolved from the plan and usage.
#[derive(Clone, Debug)]
pub(crate) struct QuoteContext {
    pub calendar: Calendar,
    pub period: BillingPeriod,
    /// Usage before this instant is in the trial and not billed.
    pub billable_from: Timestamp,
    pub currency: Currency,
    /// When the invoice is one split line of the period (`Usage::split_line`).
    pub split: Option<Split>,
}

impl QuoteContext {
    /// Where the usage rated ends: the split line's `to`, else the period's end.
    pub fn usage_end(&self) -> Timestamp {
        self.split
            .as_ref()
            .map_or(self.period.end, |split| split.to)
    }
}

/// A split line of the period (progressive billing), resolved from `Usage::split_line`.
#[derive(Clone, Debug)]
pub(crate) struct Split {
    /// The first line of the period (no `from`): advance flat fees are billed on it.
    pub first: bool,
    /// The last line of the period (no `to`): arrears flat fees, volume charges and charge
    /// minimums are billed on it.
    pub last: bool,
    /// Where the line's service period starts and ends.
    pub from: Timestamp,
    pub to: Timestamp,
    /// What the earlier lines billed, by usage charge id.
    pub billed_before: BTreeMap<String, Decimal>,
    /// Volume charges are rated on every line, not only the last.
    pub volume_each_line: bool,
}

/// Resolves and checks a usage's split line against the plan and the period. A split line
/// bills cumulative usage less what earlier lines billed per charge, which the parts of a plan
/// that see the whole invoice (its minimum commitment, discounts) or a share of the period
/// (a plan change, `usage_proration`) cannot follow: those are refused at `$.split_line`.
fn split_line(
    plan: &Plan,
    usage: &Usage,
    calendar: &Calendar,
    period: BillingPeriod,
    currency: &Currency,
) -> Result<Option<Split>, RateError> {
    let Some(line) = &usage.split_line else {
        return Ok(None);
    };
    let refuse = |what: &str| {
        usage_error(
            "$.split_line",
            format!(
                "a split line bills cumulative usage less what earlier lines billed, per charge: {what} cannot be split that way"
            ),
        )
    };
    if usage.plan_change.is_some() {
        return Err(refuse("a plan change"));
    }
    if plan.rounding.level != RoundingLevel::Line {
        return Err(refuse(
            "`rounding.level` `invoice` (a charge's amount billed is a rounded line amount)",
        ));
    }
    if plan.minimum_commitment.is_some() {
        return Err(refuse("the plan's `minimum_commitment`"));
    }
    if !plan.discounts.is_empty() {
        return Err(refuse("the plan's `discounts`"));
    }
    if let Some(charge) = plan
        .charges
        .iter()
        .find(|c| !c.usage_proration.is_default())
    {
        return Err(refuse(&format!(
            "`usage_proration` (charge `{}`)",
            charge.id
        )));
    }
    let instant = |text: &Option<String>, name: &str| -> Result<Option<Timestamp>, RateError> {
        let Some(text) = text else { return Ok(None) };
        let path = format!("$.split_line.{name}");
        let at = calendar
            .parse_instant(text)
            .map_err(|error| RateError::Period {
                path: path.clone(),
                error,
            })?;
        if at <= period.start || at >= period.end {
            return Err(usage_error(
                path,
                "a split point must fall strictly inside the rated period",
            ));
        }
        Ok(Some(at))
    };
    let from = instant(&line.from, "from")?;
    let to = instant(&line.to, "to")?;
    if let (Some(from), Some(to)) = (from, to)
        && to <= from
    {
        return Err(usage_error(
            "$.split_line.to",
            "a split line ends after it starts",
        ));
    }
    if from.is_none() && !line.billed_before.is_empty() {
        return Err(usage_error(
            "$.split_line.billed_before",
            "the first line of a period (no `from`) has no earlier lines",
        ));
    }
    for (charge_id, amount) in &line.billed_before {
        let path = || format!("$.split_line.billed_before.{charge_id}");
        match plan.charges.iter().find(|c| &c.id == charge_id) {
            None => {
                return Err(usage_error(
                    path(),
                    format!("no charge `{charge_id}` in plan `{}`", plan.id),
                ));
            }
            Some(charge) if matches!(charge.model, PriceModel::Flat { .. }) => {
                return Err(usage_error(
                    path(),
                    "a flat fee is billed whole on the first (advance) or last (arrears) line: nothing of it is billed before",
                ));
            }
            Some(_) => {}
        }
        if amount.0.normalize().scale() > currency.minor_units {
            return Err(usage_error(
                path(),
                format!(
                    "an amount billed has at most {} decimals in {}",
                    currency.minor_units, currency.code
                ),
            ));
        }
    }
    Ok(Some(Split {
        first: from.is_none(),
        last: to.is_none(),
        from: from.unwrap_or(period.start),
        to: to.unwrap_or(period.end),
        billed_before: line
            .billed_before
            .iter()
            .map(|(id, amount)| (id.clone(), amount.0))
            .collect(),
        volume_each_line: line.volume == crate::usage::SplitVolume::EachLine,
    }))
}

/// Without a subscription, periods are calendar periods anchored here (local midnight).
pub const DEFAULT_ANCHOR: &str = "2000-01-01";

/// Resolves the customer's calendar, the period to rate and the trial end.
pub(crate) fn context(plan: &Plan, usage: &Usage) -> Result<QuoteContext, RateError> {
    let currency = Currency::resolve(&plan.currency, &plan.custom_units)
        .ok_or_else(|| RateError::InvalidPlan(validate_plan(plan).errors))?;
    let timezone = usage.customer.timezone.as_deref().unwrap_or("UTC");
    let (start, anchor, start_path) = match &usage.subscription {
        Some(sub) => (
            sub.start.as_str(),
            sub.billing_anchor.as_deref(),
            "$.subscription.start",
        ),
        None => (DEFAULT_ANCHOR, None, "$.subscription"),
    };
    let calendar = Calendar::new(timezone, plan.interval, start, anchor).map_err(|source| {
        let path = match source {
            PeriodError::UnknownTimezone(_) => "$.customer.timezone",
            _ => start_path,
        };
        RateError::Period {
            path: path.to_owned(),
            error: source,
        }
    })?;
    let calendar = match usage.subscription.as_ref().and_then(|s| s.end.as_deref()) {
        Some(end) => calendar.ending(end).map_err(|source| RateError::Period {
            path: "$.subscription.end".to_owned(),
            error: source,
        })?,
        None => calendar,
    };
    let period = match (&usage.period, &usage.subscription) {
        (Some(PeriodSelector::Index { index }), _) => calendar.period(*index),
        (Some(PeriodSelector::Containing { containing }), _) => calendar
            .parse_instant(containing)
            .and_then(|instant| calendar.period_containing(instant)),
        (None, Some(_)) => calendar.period(0),
        (None, None) => {
            return Err(usage_error("$.period", "give a `period` (`{\"containing\": \"2026-11-15\"}` or `{\"index\": 0}`) or a `subscription`"));
        }
    }
    .map_err(|source| RateError::Period { path: "$.period".to_owned(), error: source })?;
    // Without a subscription, periods are counted from nowhere in particular: the quote is of
    // one period of a subscription starting then (index 0, what a prospect would start with),
    // not the 322nd since `DEFAULT_ANCHOR`.
    let period = if usage.subscription.is_none() {
        BillingPeriod { index: 0, ..period }
    } else {
        period
    };
    let billable_from = if plan.trial_days > 0 && usage.subscription.is_some() {
        calendar
            .add_days(calendar.start(), plan.trial_days)
            .map_err(|source| RateError::Period {
                path: "$.subscription.start".to_owned(),
                error: source,
            })?
    } else {
        period.start
    };
    let split = split_line(plan, usage, &calendar, period, &currency)?;
    Ok(QuoteContext {
        calendar,
        period,
        billable_from,
        currency,
        split,
    })
}

/// Rates a usage document against a plan: validates both, aggregates raw events, prices.
///
/// To quote one plan many times, prepare it once ([`PreparedPlan`]): the same invoice, without
/// validating and hashing the plan again.
pub fn quote(plan: &Plan, usage: &Usage, plugins: &dyn PluginHost) -> Result<Invoice, RateError> {
    PreparedPlan::of(plan)?.quote(usage, plugins)
}

/// A plan validated once, with the hash of its JSON taken once, and quoted many times: a pricing page re-quoting on every slider move, a cost
/// curve of thousands of samples, a server invoicing thousands of customers on one plan. A
/// quote of a prepared plan is the invoice [`quote`] gives, byte for byte.
#[derive(Clone, Debug)]
pub struct PreparedPlan<'p> {
    plan: std::borrow::Cow<'p, Plan>,
    warnings: Vec<Issue>,
    /// SHA-256 after `[<plan JSON>,`: an input hash then hashes only the usage (see
    /// [`input_hash`], the JSON of the pair).
    hash_prefix: Sha256,
    router: Router,
    /// Per charge, the position in `plan.metrics` of the metric it prices (`None` for a charge
    /// without a metric or with an unknown one), so a total looks no metric up by its code.
    charge_metrics: Vec<Option<usize>>,
    /// Per charge, for a graduated one, the amounts of its whole tiers
    /// ([`price::graduated_prefix`]): a total prices only the tier a quantity ends in.
    graduated_prefixes: Vec<Option<price::GraduatedPrefix>>,
    /// The typical period [`PreparedPlan::total`] prices (its calendar, and what an empty usage
    /// meters in it), taken at the first total; `None` when totals take the full quote.
    typical: OnceLock<Option<Typical>>,
}

/// The parts of a typical period's quote that do not depend on the quantities.
#[derive(Clone, Debug)]
struct Typical {
    ctx: QuoteContext,
    metered: MeteredUsage,
}

impl PreparedPlan<'static> {
    /// Validates `plan`: every error, or the prepared plan (with its lint warnings), owning it.
    pub fn new(plan: Plan) -> Result<Self, RateError> {
        PreparedPlan::prepare(std::borrow::Cow::Owned(plan))
    }
}

impl<'p> PreparedPlan<'p> {
    /// [`PreparedPlan::new`] of a plan it borrows.
    pub fn of(plan: &'p Plan) -> Result<Self, RateError> {
        PreparedPlan::prepare(std::borrow::Cow::Borrowed(plan))
    }

    fn prepare(plan: std::borrow::Cow<'p, Plan>) -> Result<Self, RateError> {
        let report = validate_plan(&plan);
        if !report.is_ok() {
            return Err(RateError::InvalidPlan(report.errors));
        }
        let mut hash_prefix = Sha256::new();
        hash_prefix.update(b"[");
        // Serializing a plan cannot fail: every map key is a string.
        if let Ok(bytes) = serde_json::to_vec(plan.as_ref()) {
            hash_prefix.update(&bytes);
        }
        hash_prefix.update(b",");
        let router = Router::new(&plan.metrics);
        let charge_metrics = plan
            .charges
            .iter()
            .map(|charge| {
                let code = charge.metric.as_ref()?;
                plan.metrics.iter().position(|m| &m.code == code)
            })
            .collect();
        let graduated_prefixes = plan
            .charges
            .iter()
            .map(|charge| match &charge.model {
                PriceModel::Graduated { tiers } => price::graduated_prefix(tiers, Decimal::ONE),
                _ => None,
            })
            .collect();
        Ok(PreparedPlan {
            plan,
            warnings: report.warnings,
            hash_prefix,
            router,
            charge_metrics,
            graduated_prefixes,
            typical: OnceLock::new(),
        })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The plan's lint warnings (it has no errors).
    pub fn warnings(&self) -> &[Issue] {
        &self.warnings
    }

    /// The invoice for `usage`; [`quote`] of the plan.
    pub fn quote(&self, usage: &Usage, plugins: &dyn PluginHost) -> Result<Invoice, RateError> {
        let mut rater = PeriodRater::open(self, usage, plugins)?;
        for (event_idx, event) in usage.events.iter().enumerate() {
            // An event the rater refuses is noted on the invoice, not an error of the quote.
            let _outcome = rater.push(event, format_args!("$.events[{event_idx}]"));
        }
        rater.finish()
    }

    /// The invoice total of a typical full period at `quantities` (metric code → quantity): the
    /// `total` of [`quote`] of [`typical_usage`](crate::estimate::typical_usage), to the byte,
    /// without building the invoice. Plans whose totals need more than amounts (a plugin's
    /// price or metric, a grouped metric), and every error, take the full quote.
    pub fn total(
        &self,
        quantities: &BTreeMap<String, Decimal>,
        plugins: &dyn PluginHost,
    ) -> Result<Decimal, RateError> {
        let mut slots = vec![None; self.plan.metrics.len()];
        for (code, quantity) in quantities {
            match self.metric_slot(code) {
                Some(slot) => slots[slot] = Some(*quantity),
                // What `check_usage` refuses, the full quote reports.
                None => return self.full_total(quantities, plugins),
            }
        }
        match self.fast_total(&slots) {
            Some(total) => Ok(total),
            None => self.full_total(quantities, plugins),
        }
    }

    /// The position in `plan().metrics` of the metric `code`: where [`PreparedPlan::total_at`]
    /// takes its quantity.
    pub fn metric_slot(&self, code: &str) -> Option<usize> {
        self.plan.metrics.iter().position(|m| m.code == code)
    }

    /// [`PreparedPlan::total`] of quantities by metric position (`quantities[i]` is the
    /// quantity of `plan().metrics[i]`, `None` for a metric not given; see
    /// [`PreparedPlan::metric_slot`]): the same total, for a caller that reads quantities
    /// straight into their places (a slider's total builds no map of metric codes).
    pub fn total_at(
        &self,
        quantities: &[Option<Decimal>],
        plugins: &dyn PluginHost,
    ) -> Result<Decimal, RateError> {
        if quantities.len() == self.plan.metrics.len()
            && let Some(total) = self.fast_total(quantities)
        {
            return Ok(total);
        }
        let quantities: BTreeMap<String, Decimal> = self
            .plan
            .metrics
            .iter()
            .zip(quantities)
            .filter_map(|(metric, quantity)| Some((metric.code.clone(), (*quantity)?)))
            .collect();
        self.full_total(&quantities, plugins)
    }

    /// The total of the full quote of the typical usage at `quantities`.
    fn full_total(
        &self,
        quantities: &BTreeMap<String, Decimal>,
        plugins: &dyn PluginHost,
    ) -> Result<Decimal, RateError> {
        let usage = crate::estimate::typical_usage(quantities);
        Ok(self.quote(&usage, plugins)?.total.0)
    }

    /// Whether [`PreparedPlan::total`] takes this plan's totals from amounts alone (else from
    /// the full quote); for tests and benchmarks.
    pub fn total_is_fast(&self) -> bool {
        self.typical().is_some()
    }

    /// The typical period's parts, if the plan's totals can be taken from amounts alone.
    fn typical(&self) -> Option<&Typical> {
        self.typical
            .get_or_init(|| {
                let plan = self.plan();
                let by_plugin = plan
                    .charges
                    .iter()
                    .any(|c| matches!(c.model, PriceModel::Custom { .. }))
                    || plan
                        .metrics
                        .iter()
                        .any(|m| matches!(m.aggregation, Aggregation::Custom { .. }));
                let grouped = plan.charges.iter().any(|c| {
                    c.metric.as_ref().is_some_and(|code| {
                        plan.metrics
                            .iter()
                            .any(|m| &m.code == code && !m.group_by.is_empty())
                    })
                });
                // A cap after the discounts is a stage the amounts-only path does not take.
                let capped_late = plan.charge_maximum == ChargeMaximum::AfterDiscounts
                    && plan.charges.iter().any(|c| c.maximum.is_some());
                // So is a minimum after the discounts, and usage prorated by tier.
                let floored_late = plan.charge_minimum == ChargeMinimum::AfterDiscounts
                    && plan.charges.iter().any(|c| c.minimum.is_some());
                let prorated_usage = plan
                    .charges
                    .iter()
                    .any(|c| c.usage_proration != UsageProration::None);
                if by_plugin || grouped || capped_late || floored_late || prorated_usage {
                    return None;
                }
                let usage = crate::estimate::typical_usage(&BTreeMap::new());
                let rater = PeriodRater::open(self, &usage, &crate::plugin::NoPlugins).ok()?;
                let (ctx, metered) = rater.into_metered().ok()??;
                Some(Typical { ctx, metered })
            })
            .as_ref()
    }

    /// [`PreparedPlan::total`] from amounts alone: the stages of `price_usage` in its order,
    /// each price model computed by the same code into [`AmountOnly`], no text. `None` for
    /// what it does not take (see `total`) and for any error (the full quote reports it).
    fn fast_total(&self, quantities: &[Option<Decimal>]) -> Option<Decimal> {
        let typical = self.typical()?;
        let plan = self.plan();
        // What `check_usage` refuses, the full quote reports.
        if quantities.iter().flatten().any(|q| *q < Decimal::ZERO) {
            return None;
        }
        let ctx = &typical.ctx;
        let period = ctx.period;
        let billed_from = ctx.billable_from.max(period.start);
        let in_trial_all_period = billed_from >= period.end;
        let mut lines: Vec<LineAmount<'_>> = Vec::with_capacity(plan.charges.len());
        for charge in &plan.charges {
            if let PriceModel::Flat {
                amount, prorate, ..
            } = charge.model
            {
                let (_, exact) = flat_amount(
                    plan,
                    ctx,
                    billed_from,
                    period.end,
                    charge,
                    amount.0,
                    prorate,
                )
                .ok()?;
                lines.push(LineAmount {
                    charge_id: &charge.id,
                    origin: LineOrigin::Charge,
                    amount: exact,
                });
            }
        }
        if !in_trial_all_period {
            for charge_idx in 0..plan.charges.len() {
                if let Some(line) = self.fast_usage_line(typical, charge_idx, quantities)? {
                    lines.push(line);
                }
            }
        }
        let rounding = Rounding {
            currency: &ctx.currency,
            mode: plan.rounding.mode,
            level: plan.rounding.level,
        };
        let mut exact_sum = Decimal::ZERO;
        let mut billed_sum = Decimal::ZERO;
        for line in &lines {
            exact_sum = price::add(exact_sum, line.amount).ok()?;
            billed_sum = price::add(billed_sum, rounding.billed(line.amount)).ok()?;
        }
        let true_up = if in_trial_all_period {
            None
        } else {
            commitment_true_up(plan, ctx, billed_from, exact_sum, billed_sum, rounding).ok()?
        };
        if let Some(true_up) = &true_up {
            exact_sum = price::add(exact_sum, true_up.priced.amount).ok()?;
            billed_sum = price::add(billed_sum, rounding.billed(true_up.priced.amount)).ok()?;
            lines.push(LineAmount::of(true_up));
        }
        let subtotal = match rounding.level {
            RoundingLevel::Line => billed_sum,
            RoundingLevel::Invoice => rounding.round(exact_sum),
        };
        let (_, discounted) =
            apply_discounts(plan, period.index, &lines, subtotal, rounding).ok()?;
        let (_, taxed) = apply_taxes(plan, discounted, rounding).ok()?;
        let (_, total) = apply_credits(plan, &[], taxed, rounding.currency);
        Some(currency_scale(total.max(Decimal::ZERO), rounding.currency))
    }

    /// The line of a usage charge in [`PreparedPlan::fast_total`]: what `charge_lines` and
    /// `apply_charge_bounds` compute for its one group. `Some(None)` for a charge that has
    /// no usage line, `None` for what the fast path does not take.
    fn fast_usage_line<'s>(
        &'s self,
        typical: &'s Typical,
        charge_idx: usize,
        quantities: &[Option<Decimal>],
    ) -> Option<Option<LineAmount<'s>>> {
        let plan = self.plan();
        let charge = plan.charges.get(charge_idx)?;
        if matches!(charge.model, PriceModel::Flat { .. }) {
            return Some(None);
        }
        let Some((metric_idx, metric)) = self
            .charge_metrics
            .get(charge_idx)
            .copied()
            .flatten()
            .and_then(|idx| Some((idx, plan.metrics.get(idx)?)))
        else {
            return Some(None);
        };
        // A quantity given replaces what was metered (`apply_quantities`).
        let given;
        let group = match quantities.get(metric_idx).copied().flatten() {
            Some(quantity) => {
                given = GroupUsage {
                    group: GroupKey::new(),
                    raw_value: quantity,
                    quantity,
                    n_events: 0,
                    transactions: None,
                    values: None,
                    dated: None,
                };
                &given
            }
            None => match typical.metered.metrics.get(&metric.code).map(Vec::as_slice) {
                Some([group]) if group.group.is_empty() => group,
                _ => return None,
            },
        };
        let allowance = allowance_off_quantity(charge);
        let used = allowance.min(group.quantity).max(Decimal::ZERO);
        let billable = group.quantity - used;
        let prefix = self
            .graduated_prefixes
            .get(charge_idx)
            .and_then(Option::as_ref);
        let mut amount = match (&charge.model, prefix) {
            // `price_group`'s graduated case, from the tier the quantity ends in.
            (PriceModel::Graduated { tiers }, Some(prefix))
                if charge.zero_usage != ZeroUsage::FirstTierFlatFee || billable > Decimal::ZERO =>
            {
                check_within_last_tier(plan, charge, billable).ok()?;
                price::graduated_amount(tiers, prefix, billable, plan.tier_convention, Decimal::ONE)
                    .ok()?
            }
            _ => {
                let (priced, _) =
                    price_group::<AmountOnly>(plan, charge, metric, group, used, billable, None)
                        .ok()??;
                priced.ok()?.amount()
            }
        };
        if let Some((adjustment, _)) =
            charge_adjustment(charge, charge.minimum, charge.maximum, amount).ok()?
        {
            amount += adjustment;
        }
        Some(Some(LineAmount {
            charge_id: &charge.id,
            origin: LineOrigin::Charge,
            amount,
        }))
    }

    /// The router of the plan's events to its metrics, shared by every aggregator of it (route
    /// events with it ahead of [`PeriodRater::push_routed`]).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// [`input_hash`] of the plan and `usage`.
    pub fn input_hash(&self, usage: &Usage) -> String {
        let mut hasher = self.hash_prefix.clone();
        if let Ok(bytes) = serde_json::to_vec(usage) {
            hasher.update(&bytes);
        }
        hasher.update(b"]");
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// The SHA-256 of the canonical JSON of the plan and usage.
pub fn input_hash(plan: &Plan, usage: &Usage) -> String {
    let mut hasher = Sha256::new();
    // Serializing these types cannot fail: every map key is a string.
    if let Ok(bytes) = serde_json::to_vec(&(plan, usage)) {
        hasher.update(&bytes);
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

pub(crate) fn check_usage(plan: &Plan, usage: &Usage) -> Result<(), RateError> {
    for (code, input) in &usage.quantities {
        // Written only for an error (a quote of good usage allocates no path).
        let path = || format!("$.quantities.{code}");
        let metric = plan
            .metrics
            .iter()
            .find(|m| &m.code == code)
            .ok_or_else(|| {
                usage_error(path(), format!("no metric `{code}` in plan `{}`", plan.id))
            })?;
        match input {
            QuantityInput::Total(quantity) => {
                if quantity.0 < Decimal::ZERO && metric.negative_values.is_default() {
                    return Err(usage_error(path(), "a quantity cannot be negative"));
                }
                if !metric.group_by.is_empty() {
                    return Err(usage_error(
                        path(),
                        format!(
                            "metric `{code}` groups by {:?}: give a list of `{{\"group\": {{...}}, \"quantity\": ...}}`",
                            metric.group_by
                        ),
                    ));
                }
            }
            QuantityInput::Groups(groups) => {
                for (group_idx, group) in groups.iter().enumerate() {
                    let gpath = format!("{}[{group_idx}]", path());
                    if group.quantity.0 < Decimal::ZERO && metric.negative_values.is_default() {
                        return Err(usage_error(
                            format!("{gpath}.quantity"),
                            "a quantity cannot be negative",
                        ));
                    }
                    let dims: Vec<&String> = group.group.keys().collect();
                    let mut want: Vec<&String> = metric.group_by.iter().collect();
                    crate::sort::sort_by(&mut want, Ord::cmp);
                    if dims != want {
                        return Err(usage_error(
                            format!("{gpath}.group"),
                            format!(
                                "metric `{code}` groups by {:?}, the group names {:?}",
                                metric.group_by, dims
                            ),
                        ));
                    }
                    if groups[..group_idx].iter().any(|g| g.group == group.group) {
                        return Err(usage_error(
                            format!("{gpath}.group"),
                            "this group is listed twice",
                        ));
                    }
                }
            }
        }
    }
    for code in usage.carry_in.keys() {
        if !plan.metrics.iter().any(|m| &m.code == code) {
            return Err(usage_error(
                format!("$.carry_in.{code}"),
                format!("no metric `{code}` in plan `{}`", plan.id),
            ));
        }
    }
    for (credit_idx, credit) in usage.credits.iter().enumerate() {
        if credit.amount < Decimal::ZERO {
            return Err(usage_error(
                format!("$.credits[{credit_idx}].amount"),
                "a credit amount is negative",
            ));
        }
    }
    Ok(())
}

/// The events of one aggregation that were not billed, and why, for the invoice's notes: counts
/// per reason, and the first rejected events with their errors.
#[derive(Clone, Debug, Default)]
pub(crate) struct NotBilled {
    counts: BTreeMap<&'static str, u64>,
    rejected: Vec<String>,
    n_rejected: u64,
}

impl NotBilled {
    /// At most this many rejected events are noted one by one.
    const MAX_REJECTED_NOTES: u64 = 20;

    /// Counts an event the aggregator did not count (a `Counted` outcome is ignored).
    pub fn record(&mut self, outcome: Outcome) {
        let what = match outcome {
            Outcome::Counted => return,
            Outcome::OutsideWindow => "outside the period",
            Outcome::BeforeBillable => "in the trial",
            Outcome::NoMetric => "matching no metric",
            Outcome::Filtered => "filtered out",
            Outcome::Duplicate => "duplicates",
            Outcome::OtherCustomer => "of other customers",
        };
        *self.counts.entry(what).or_default() += 1;
    }

    /// Counts an event of the period after a split line's end: a later line bills it.
    pub fn record_after_split_line(&mut self) {
        *self
            .counts
            .entry("after this split line (a later line's)")
            .or_default() += 1;
    }

    /// Notes an event the aggregator refused; `place` says where it was (`$.events[3]`,
    /// `line 12`).
    pub fn reject(&mut self, place: impl fmt::Display, error: &EventError) {
        self.n_rejected += 1;
        if self.n_rejected <= Self::MAX_REJECTED_NOTES {
            self.rejected.push(format!("{place}: rejected: {error}"));
        }
    }

    /// Appends the notes: rejected events first, then the counts by reason. Events outside
    /// the window are noted only if the window starts with the period (`whole_period`; with
    /// a plan change, the old plan's window does not).
    pub fn write_notes(self, notes: &mut Vec<String>, whole_period: bool) {
        notes.extend(self.rejected);
        if self.n_rejected > Self::MAX_REJECTED_NOTES {
            notes.push(format!(
                "{} more events rejected",
                self.n_rejected - Self::MAX_REJECTED_NOTES
            ));
        }
        for (what, n) in self.counts {
            if whole_period || what != "outside the period" {
                notes.push(format!("{n} events not billed: {what}"));
            }
        }
    }
}

pub(crate) fn apply_quantities(
    plan: &Plan,
    quantities: &BTreeMap<String, QuantityInput>,
    metered: &mut MeteredUsage,
) -> Result<(), RateError> {
    for (code, input) in quantities {
        let negative_values = plan
            .metrics
            .iter()
            .find(|m| &m.code == code)
            .map(|m| m.negative_values)
            .unwrap_or_default();
        let groups = match input {
            QuantityInput::Total(quantity) => vec![GroupUsage {
                group: GroupKey::new(),
                raw_value: quantity.0,
                quantity: negative_values.apply(quantity.0),
                n_events: 0,
                transactions: None,
                values: None,
                dated: None,
            }],
            QuantityInput::Groups(groups) => {
                let mut groups: Vec<GroupUsage> = groups
                    .iter()
                    .map(|g| GroupUsage {
                        group: g.group.clone(),
                        raw_value: g.quantity.0,
                        quantity: negative_values.apply(g.quantity.0),
                        n_events: g.transactions.as_ref().map_or(0, |t| t.len() as u64),
                        transactions: g
                            .transactions
                            .as_ref()
                            .map(|t| t.iter().map(|d| d.0).collect()),
                        values: None,
                        dated: None,
                    })
                    .collect();
                crate::sort::sort_by(&mut groups, |a, b| a.group.cmp(&b.group));
                groups
            }
        };
        debug_assert!(plan.metrics.iter().any(|m| &m.code == code));
        metered.metrics.insert(code.clone(), groups);
    }
    Ok(())
}

/// What discounts read of a line: its charge, origin and exact amount.
#[derive(Clone, Copy, Debug)]
struct LineAmount<'l> {
    charge_id: &'l str,
    origin: LineOrigin,
    amount: Decimal,
}

impl<'l> LineAmount<'l> {
    fn of(line: &'l RawLine) -> Self {
        LineAmount {
            charge_id: &line.charge_id,
            origin: line.origin,
            amount: line.priced.amount,
        }
    }
}

/// A line before rounding.
struct RawLine {
    charge_id: String,
    origin: LineOrigin,
    description: String,
    metric: Option<String>,
    group: GroupKey,
    quantity: Decimal,
    unit_price: Option<Decimal>,
    priced: Priced,
}

/// Prices aggregated usage: the back half of a [`PeriodRater`](crate::rater::PeriodRater).
/// `previous` carries the plan a mid-period change came from, its usage, and the change
/// instant; `credits` are the customer's own (the plan's come first). The stages are the
/// module's list: lines, the commitment true-up, subtotal, discounts, taxes, credits.
#[allow(clippy::too_many_arguments)]
pub(crate) fn price_usage(
    plan: &Plan,
    customer: &Customer,
    customer_credits: &[crate::plan::Credit],
    ctx: &QuoteContext,
    metered: MeteredUsage,
    previous: Option<(&Plan, MeteredUsage, Timestamp)>,
    mut notes: Vec<String>,
    plugins: &dyn PluginHost,
    input_hash: String,
) -> Result<Invoice, RateError> {
    let period = ctx.period;
    let cal = &ctx.calendar;
    let billed_from = ctx.billable_from.max(period.start);
    let in_trial_all_period = billed_from >= period.end;
    // A period that starts where it ends (a daily period on a day the timezone skipped) serves
    // nothing: every fee is 0 and each usage charge has a line of zero quantity.
    let empty_period = period.start == period.end;
    if empty_period {
        notes.push(format!(
            "the period is empty (it starts and ends at {}): nothing is billed",
            cal.format(period.start)
        ));
    } else if in_trial_all_period {
        notes.push("the whole period is in the trial: nothing is billed".to_owned());
    } else if billed_from > period.start {
        notes.push(format!(
            "trial until {}: flat fees prorated, earlier usage not billed",
            cal.format(billed_from)
        ));
    }
    if let Some(split) = &ctx.split {
        notes.push(format!(
            "split line {} to {} of the period: usage rated from {}{}",
            cal.format(split.from),
            cal.format(split.to),
            cal.format(period.start),
            if split.first {
                " (the period's first line)"
            } else {
                ", less what the period's earlier lines billed"
            }
        ));
    }
    if period.end < period.cycle_end {
        notes.push(format!(
            "the subscription ends at {}: flat fees prorated, later usage not billed",
            cal.format(period.end)
        ));
    }
    let mut raw_lines = Vec::new();
    if let Some((old_plan, old_metered, at)) = &previous {
        previous_plan_lines(
            old_plan,
            old_metered,
            *at,
            customer,
            ctx,
            billed_from,
            plugins,
            &mut raw_lines,
        )?;
    }
    let new_from = match &previous {
        Some((_, _, at)) => (*at).max(billed_from),
        None => billed_from,
    };
    flat_lines(plan, ctx, new_from, period.end, None, None, &mut raw_lines)?;
    if empty_period {
        raw_lines.extend(empty_period_lines(plan));
    } else if !in_trial_all_period {
        let billed = (new_from, period.end);
        usage_lines(
            plan,
            customer,
            ctx,
            metered,
            None,
            billed,
            plugins,
            &mut raw_lines,
        )?;
    }

    let rounding = Rounding {
        currency: &ctx.currency,
        mode: plan.rounding.mode,
        level: plan.rounding.level,
    };
    if plan.charge_minimum == ChargeMinimum::AfterDiscounts && !in_trial_all_period {
        let shortfalls = charge_minimum_lines(plan, period.index, &raw_lines, rounding)?;
        raw_lines.extend(shortfalls);
    }
    let mut exact_sum = Decimal::ZERO;
    let mut billed_sum = Decimal::ZERO;
    for line in &raw_lines {
        exact_sum = price::add(exact_sum, line.priced.amount).map_err(overflow("subtotal"))?;
        billed_sum = price::add(billed_sum, rounding.billed(line.priced.amount))
            .map_err(overflow("subtotal"))?;
    }
    if !in_trial_all_period
        && let Some(true_up) =
            commitment_true_up(plan, ctx, billed_from, exact_sum, billed_sum, rounding)?
    {
        exact_sum = price::add(exact_sum, true_up.priced.amount).map_err(overflow("subtotal"))?;
        billed_sum = price::add(billed_sum, rounding.billed(true_up.priced.amount))
            .map_err(overflow("subtotal"))?;
        raw_lines.push(true_up);
    }
    let subtotal = match rounding.level {
        RoundingLevel::Line => billed_sum,
        RoundingLevel::Invoice => rounding.round(exact_sum),
    };
    let amounts: Vec<LineAmount<'_>> = raw_lines.iter().map(LineAmount::of).collect();
    let (discounts, discounted) =
        apply_discounts(plan, period.index, &amounts, subtotal, rounding)?;
    let (taxes, taxed) = apply_taxes(plan, discounted, rounding)?;
    let (credits, total) = apply_credits(plan, customer_credits, taxed, rounding.currency);
    if subtotal < Decimal::ZERO {
        notes.push(format!(
            "the subtotal is negative: {} is owed to the customer",
            rounding.currency.format(-subtotal)
        ));
    }
    // Both plans of a change see the same events: say each thing once.
    let mut seen = std::collections::BTreeSet::new();
    notes.retain(|note| seen.insert(note.clone()));

    let currency = rounding.currency;
    let lines = raw_lines
        .into_iter()
        .map(|line| rounding.line(line))
        .collect();
    Ok(Invoice {
        plan_id: plan.id.clone(),
        customer_id: customer.id.clone(),
        currency: currency.code.clone(),
        period: PeriodInfo {
            index: period.index,
            start: cal.format(period.start),
            end: cal.format(period.end),
            timezone: cal.timezone().to_owned(),
            tzdata: chrono_tz::IANA_TZDB_VERSION.to_owned(),
        },
        lines,
        subtotal: Amount(currency_scale(subtotal, currency)),
        discounts,
        taxes,
        credits,
        total: Amount(currency_scale(total.max(Decimal::ZERO), currency)),
        notes,
        rounding: format!(
            "{} {} to {} dp",
            match rounding.level {
                RoundingLevel::Line => "line",
                RoundingLevel::Invoice => "invoice",
            },
            rounding.mode.name(),
            currency.minor_units
        ),
        input_hash,
    })
}

/// The lines of an empty period's usage charges: zero quantity, nothing billed (no minimum,
/// no zero-usage fee: no time was served), no plugin asked.
fn empty_period_lines(plan: &Plan) -> impl Iterator<Item = RawLine> + '_ {
    plan.charges.iter().filter_map(|charge| {
        let metric = plan
            .metrics
            .iter()
            .find(|m| charge.metric.as_ref() == Some(&m.code))?;
        let mut priced = Priced::default();
        priced.breakdown.push(BreakdownRow::units(
            "empty period: no usage billed".to_owned(),
            Decimal::ZERO,
            Decimal::ZERO,
            Decimal::ZERO,
        ));
        Some(RawLine {
            charge_id: charge.id.clone(),
            origin: LineOrigin::Charge,
            description: describe(charge, Some(metric)),
            metric: Some(metric.code.clone()),
            group: GroupKey::new(),
            quantity: Decimal::ZERO,
            unit_price: None,
            priced,
        })
    })
}

/// Rounding to the currency's minor units with the plan's mode, at the plan's level.
#[derive(Clone, Copy)]
struct Rounding<'a> {
    currency: &'a Currency,
    mode: crate::money::RoundingMode,
    level: RoundingLevel,
}

impl Rounding<'_> {
    fn round(self, amount: Decimal) -> Decimal {
        self.currency.round(amount, self.mode)
    }

    /// What a line of this exact amount bills: rounded under line rounding, exact under
    /// invoice rounding.
    fn billed(self, exact: Decimal) -> Decimal {
        match self.level {
            RoundingLevel::Line => self.round(exact),
            RoundingLevel::Invoice => exact,
        }
    }

    /// The invoice line of a raw line, saying how it was rounded when that changed anything.
    fn line(self, line: RawLine) -> Line {
        let currency = self.currency;
        let amount = self.billed(line.priced.amount);
        let rounding = (amount != line.priced.amount).then(|| {
            format!(
                "{} rounded {} to {} dp: {}",
                normalized_text(line.priced.amount),
                self.mode.name(),
                currency.minor_units,
                currency.format(amount)
            )
        });
        Line {
            rounding,
            charge_id: line.charge_id,
            origin: line.origin,
            description: line.description,
            metric: line.metric,
            group: line.group,
            quantity: Dec(line.quantity),
            unit_price: line.unit_price.map(Dec),
            exact_amount: Dec(line.priced.amount),
            amount: Amount(match self.level {
                RoundingLevel::Line => currency_scale(amount, currency),
                RoundingLevel::Invoice => amount.normalize(),
            }),
            breakdown: line.priced.breakdown,
        }
    }
}

/// The lines of the plan in force before a mid-period change (`at`): its arrears fees and
/// usage until then, and a credit for the unused part of its advance fees (billed in full at
/// the start of the period, so not charged again).
#[allow(clippy::too_many_arguments)]
fn previous_plan_lines(
    old_plan: &Plan,
    old_metered: &MeteredUsage,
    at: Timestamp,
    customer: &Customer,
    ctx: &QuoteContext,
    billed_from: Timestamp,
    plugins: &dyn PluginHost,
    raw_lines: &mut Vec<RawLine>,
) -> Result<(), RateError> {
    let period = ctx.period;
    let cal = &ctx.calendar;
    let old_from = billed_from.min(at);
    flat_lines(
        old_plan,
        ctx,
        old_from,
        at,
        Some("previous plan"),
        Some(FeeTiming::Arrears),
        raw_lines,
    )?;
    for charge in &old_plan.charges {
        if let PriceModel::Flat {
            amount,
            timing: FeeTiming::Advance,
            prorate: true,
        } = charge.model
        {
            let (fraction, unused) = prorated(
                cal,
                old_plan.proration,
                &period,
                at.max(billed_from),
                period.end,
                amount.0,
            )
            .map_err(overflow(format!("charge `{}`", charge.id)))?;
            let credit = -unused;
            raw_lines.push(RawLine {
                charge_id: charge.id.clone(),
                origin: LineOrigin::PreviousPlan,
                description: format!(
                    "Unused time on {} after {}",
                    describe(charge, None),
                    cal.format(at)
                ),
                metric: None,
                group: GroupKey::new(),
                quantity: fraction,
                unit_price: Some(amount.0),
                priced: Priced {
                    amount: credit,
                    breakdown: vec![BreakdownRow::units(
                        format!(
                            "credit {} × {} of the period",
                            normalized_text(amount),
                            normalized_text(fraction.round_dp(6))
                        ),
                        fraction,
                        -amount,
                        credit,
                    )],
                },
            });
        }
    }
    if billed_from < period.end {
        usage_lines(
            old_plan,
            customer,
            ctx,
            old_metered.clone(),
            Some("previous plan"),
            (old_from, at),
            plugins,
            raw_lines,
        )?;
    }
    Ok(())
}

/// The plan's minimum commitment true-up line, prorated like a flat fee for a partial period,
/// when the charges (`exact_sum`, or `billed_sum` under line rounding) fall short of it.
fn commitment_true_up(
    plan: &Plan,
    ctx: &QuoteContext,
    billed_from: Timestamp,
    exact_sum: Decimal,
    billed_sum: Decimal,
    rounding: Rounding<'_>,
) -> Result<Option<RawLine>, RateError> {
    let Some(commitment) = plan.minimum_commitment else {
        return Ok(None);
    };
    let period = ctx.period;
    let (fraction, due) = prorated(
        &ctx.calendar,
        plan.proration,
        &period,
        billed_from,
        period.end,
        commitment.0,
    )
    .map_err(overflow("minimum commitment"))?;
    let spent = match rounding.level {
        RoundingLevel::Line => billed_sum,
        RoundingLevel::Invoice => exact_sum,
    };
    if spent >= due {
        return Ok(None);
    }
    let true_up = price::sub(due, spent).map_err(overflow("minimum commitment"))?;
    let mut breakdown = vec![BreakdownRow::fee(
        format!("commitment {} for the period", normalized_text(commitment)),
        due,
    )];
    if fraction != Decimal::ONE {
        breakdown[0].description = format!(
            "commitment {} × {} of the period",
            normalized_text(commitment),
            normalized_text(fraction.round_dp(6))
        );
    }
    breakdown.push(BreakdownRow::fee(
        format!("less charges {}", normalized_text(spent)),
        -spent,
    ));
    Ok(Some(RawLine {
        charge_id: "minimum_commitment".to_owned(),
        origin: LineOrigin::MinimumCommitment,
        description: "Minimum commitment true-up".to_owned(),
        metric: None,
        group: GroupKey::new(),
        quantity: Decimal::ONE,
        unit_price: None,
        priced: Priced {
            amount: true_up,
            breakdown,
        },
    }))
}

/// With `charge_minimum` `after_discounts`: for each charge with a `minimum`, its billed lines
/// less what the discounts scoped to it alone take off them (as [`apply_discounts`] computes
/// them, on the same base), and a line of origin `charge_minimum` for the shortfall.
fn charge_minimum_lines(
    plan: &Plan,
    period_index: u32,
    raw_lines: &[RawLine],
    rounding: Rounding<'_>,
) -> Result<Vec<RawLine>, RateError> {
    let mut shortfalls = Vec::new();
    for charge in &plan.charges {
        let Some(minimum) = charge.minimum else {
            continue;
        };
        let context = || overflow(format!("charge `{}`", charge.id));
        let mut billed = Decimal::ZERO;
        for line in raw_lines
            .iter()
            .filter(|l| l.origin != LineOrigin::MinimumCommitment && l.charge_id == charge.id)
        {
            billed = price::add(billed, rounding.billed(line.priced.amount)).map_err(context())?;
        }
        let base = rounding.round(billed);
        let mut net = base;
        for discount in plan.discounts.iter().filter(|d| {
            d.charges.as_deref() == Some(std::slice::from_ref(&charge.id))
                && d.duration_periods.is_none_or(|n| period_index < n)
        }) {
            let off = match (discount.percent, discount.amount) {
                (Some(percent), _) => rounding.round(
                    price::div(
                        price::mul(base, percent.0).map_err(context())?,
                        Decimal::ONE_HUNDRED,
                    )
                    .map_err(context())?,
                ),
                (None, Some(amount)) => amount.0,
                (None, None) => Decimal::ZERO,
            }
            .min(base)
            .max(Decimal::ZERO);
            net = price::sub(net, off).map_err(context())?;
        }
        if net >= minimum.0 {
            continue;
        }
        let shortfall = price::sub(minimum.0, net.max(Decimal::ZERO)).map_err(context())?;
        shortfalls.push(RawLine {
            charge_id: charge.id.clone(),
            origin: LineOrigin::ChargeMinimum,
            description: format!(
                "{}: minimum spend {} after its discounts",
                charge.id,
                minimum.normalize()
            ),
            metric: charge.metric.clone(),
            group: GroupKey::new(),
            quantity: Decimal::ONE,
            unit_price: None,
            priced: Priced {
                amount: shortfall,
                breakdown: vec![
                    BreakdownRow::fee(format!("minimum {}", minimum.normalize()), minimum.0),
                    BreakdownRow::fee(
                        format!("less the charge net of its discounts {}", net.normalize()),
                        -net.max(Decimal::ZERO),
                    ),
                ],
            },
        });
    }
    Ok(shortfalls)
}

/// The plan's discounts in order, each limited to what is left (never below zero): the
/// discounts applied and the discounted subtotal.
fn apply_discounts(
    plan: &Plan,
    period_index: u32,
    lines: &[LineAmount<'_>],
    subtotal: Decimal,
    rounding: Rounding<'_>,
) -> Result<(Vec<AppliedDiscount>, Decimal), RateError> {
    let mut discounts = Vec::new();
    let mut remaining = subtotal.max(Decimal::ZERO);
    // What the discounts scoped to one charge alone took off it, for `charge_maximum`
    // `after_discounts`.
    let mut own_discounts: BTreeMap<&str, Decimal> = BTreeMap::new();
    for discount in &plan.discounts {
        if discount.duration_periods.is_some_and(|n| period_index >= n) {
            continue;
        }
        let base = match &discount.charges {
            None => remaining,
            Some(ids) => {
                let mut base = Decimal::ZERO;
                // A charge's lines from a previous plan count as the charge's.
                for line in lines.iter().filter(|l| {
                    l.origin != LineOrigin::MinimumCommitment
                        && l.origin != LineOrigin::ChargeMinimum
                        && ids.iter().any(|id| id == l.charge_id)
                }) {
                    base = price::add(base, rounding.billed(line.amount))
                        .map_err(overflow("discount"))?;
                }
                rounding.round(base).min(remaining)
            }
        };
        let off = match (discount.percent, discount.amount) {
            (Some(percent), _) => rounding.round(
                price::div(
                    price::mul(base, percent.0).map_err(overflow("discount"))?,
                    Decimal::ONE_HUNDRED,
                )
                .map_err(overflow("discount"))?,
            ),
            (None, Some(amount)) => amount.0,
            (None, None) => Decimal::ZERO,
        }
        .min(base)
        .max(Decimal::ZERO);
        remaining = price::sub(remaining, off).map_err(overflow("discount"))?;
        discounts.push(AppliedDiscount {
            id: discount.id.clone(),
            description: if discount.description.is_empty() {
                discount.id.clone()
            } else {
                discount.description.clone()
            },
            amount: Amount(currency_scale(off, rounding.currency)),
        });
        if let Some([only]) = discount.charges.as_deref() {
            let given = own_discounts.entry(only.as_str()).or_insert(Decimal::ZERO);
            *given = price::add(*given, off).map_err(overflow("discount"))?;
        }
    }
    if plan.charge_maximum == ChargeMaximum::AfterDiscounts {
        for charge in plan.charges.iter() {
            let Some(maximum) = charge.maximum else {
                continue;
            };
            let mut billed = Decimal::ZERO;
            for line in lines
                .iter()
                .filter(|l| l.origin != LineOrigin::MinimumCommitment && l.charge_id == charge.id)
            {
                billed = price::add(billed, rounding.billed(line.amount))
                    .map_err(overflow("discount"))?;
            }
            let given = own_discounts
                .get(charge.id.as_str())
                .copied()
                .unwrap_or_default();
            let net = price::sub(rounding.round(billed), given).map_err(overflow("discount"))?;
            let off = price::sub(net, maximum.0)
                .map_err(overflow("discount"))?
                .min(remaining)
                .max(Decimal::ZERO);
            if off.is_zero() {
                continue;
            }
            remaining = price::sub(remaining, off).map_err(overflow("discount"))?;
            discounts.push(AppliedDiscount {
                id: format!("{}.maximum", charge.id),
                description: format!(
                    "charge `{}` capped at its maximum {} after its discounts",
                    charge.id,
                    maximum.normalize()
                ),
                amount: Amount(currency_scale(off, rounding.currency)),
            });
        }
    }
    Ok((discounts, remaining))
}

/// Taxes on the discounted subtotal (`gross`): the taxes applied and the total with the
/// exclusive ones added. Inclusive taxes are extracted together: the net amount is
/// gross / (1 + sum of inclusive rates), each inclusive tax is its rate on the net (the last
/// one takes the rounding remainder, so they add up to gross − net exactly), and exclusive
/// taxes are charged on the net, never on another tax.
fn apply_taxes(
    plan: &Plan,
    gross: Decimal,
    rounding: Rounding<'_>,
) -> Result<(Vec<AppliedTax>, Decimal), RateError> {
    let currency = rounding.currency;
    let round = |amount: Decimal| rounding.round(amount);
    let percent_rate =
        |percent: Decimal| price::div(percent, Decimal::ONE_HUNDRED).map_err(overflow("tax"));
    let mut inclusive_rate = Decimal::ZERO;
    for tax in plan.taxes.iter().filter(|t| t.inclusive) {
        inclusive_rate =
            price::add(inclusive_rate, percent_rate(tax.percent.0)?).map_err(overflow("tax"))?;
    }
    let net = if inclusive_rate.is_zero() {
        gross
    } else {
        round(price::div(gross, Decimal::ONE + inclusive_rate).map_err(overflow("tax"))?)
    };
    let last_inclusive = plan.taxes.iter().rposition(|t| t.inclusive);
    let mut extracted = Decimal::ZERO;
    let mut taxes = Vec::new();
    let mut total = gross;
    for (tax_idx, tax) in plan.taxes.iter().enumerate() {
        let rate = percent_rate(tax.percent.0)?;
        let amount = if tax.inclusive {
            let amount = if Some(tax_idx) == last_inclusive {
                price::sub(gross, net)
                    .and_then(|rest| price::sub(rest, extracted))
                    .map_err(overflow("tax"))?
            } else {
                round(price::mul(net, rate).map_err(overflow("tax"))?)
            };
            extracted = price::add(extracted, amount).map_err(overflow("tax"))?;
            amount
        } else {
            let amount = round(price::mul(net, rate).map_err(overflow("tax"))?);
            total = price::add(total, amount).map_err(overflow("total"))?;
            amount
        };
        taxes.push(AppliedTax {
            id: tax.id.clone(),
            name: if tax.name.is_empty() {
                tax.id.clone()
            } else {
                tax.name.clone()
            },
            percent: tax.percent,
            inclusive: tax.inclusive,
            taxable: Amount(currency_scale(net, currency)),
            amount: Amount(currency_scale(amount, currency)),
        });
    }
    Ok((taxes, total))
}

/// Prepaid credits, the plan's then the customer's, each applied until the total is zero:
/// the credits applied and the total left.
fn apply_credits(
    plan: &Plan,
    customer_credits: &[crate::plan::Credit],
    mut total: Decimal,
    currency: &Currency,
) -> (Vec<AppliedCredit>, Decimal) {
    let mut credits = Vec::new();
    for credit in plan.credits.iter().chain(customer_credits) {
        let applied = credit.amount.0.min(total).max(Decimal::ZERO);
        total -= applied;
        credits.push(AppliedCredit {
            id: credit.id.clone(),
            description: if credit.description.is_empty() {
                credit.id.clone()
            } else {
                credit.description.clone()
            },
            applied: Amount(currency_scale(applied, currency)),
            remaining: Amount(currency_scale(credit.amount.0 - applied, currency)),
        });
    }
    (credits, total)
}

/// An amount already rounded to minor units, written with exactly that scale.
fn currency_scale(amount: Decimal, currency: &Currency) -> Decimal {
    let mut amount = amount;
    amount.rescale(currency.minor_units);
    amount
}

fn describe(charge: &Charge, metric: Option<&Metric>) -> String {
    if !charge.description.is_empty() {
        charge.description.clone()
    } else if let Some(metric) = metric.filter(|m| !m.name.is_empty()) {
        metric.name.clone()
    } else {
        charge.id.clone()
    }
}

fn suffixed(text: String, suffix: Option<&str>) -> String {
    match suffix {
        Some(suffix) => format!("{text} ({suffix})"),
        None => text,
    }
}

/// `amount` prorated for the share of `period` covered by `[from, to)`: the fraction (for
/// display) and the amount. The amount is multiplied by the fraction's numerator before dividing
/// by its denominator, so a share that is exact in decimals stays exact: 45.15 × 1/30 is 1.505
/// (half-up 1.51), where 45.15 × 0.0333…3 would be 1.50499… and round a cent down.
fn prorated(
    cal: &Calendar,
    mode: crate::plan::ProrationMode,
    period: &BillingPeriod,
    from: Timestamp,
    to: Timestamp,
    amount: Decimal,
) -> Result<(Decimal, Decimal), Overflow> {
    let (numerator, denominator) = cal.fraction_parts(mode, period, from, to);
    let fraction = cal.fraction(mode, period, from, to);
    let exact = match price::mul(amount, Decimal::from(numerator)) {
        Ok(scaled) => price::div(scaled, Decimal::from(denominator))?,
        // An amount too large to scale by a millisecond count: the quotient is the best we have.
        Err(Overflow) => price::mul(amount, fraction)?,
    };
    Ok((fraction, exact))
}

/// A flat fee of `amount` for the billed part `[from, to)` of the period: the fraction of the
/// period it is for and the exact amount.
fn flat_amount(
    plan: &Plan,
    ctx: &QuoteContext,
    from: Timestamp,
    to: Timestamp,
    charge: &Charge,
    amount: Decimal,
    prorate: bool,
) -> Result<(Decimal, Decimal), RateError> {
    Ok(match (from < to, prorate) {
        (false, _) => (Decimal::ZERO, Decimal::ZERO),
        (true, false) => (Decimal::ONE, amount),
        (true, true) => prorated(&ctx.calendar, plan.proration, &ctx.period, from, to, amount)
            .map_err(overflow(format!("charge `{}`", charge.id)))?,
    })
}

/// Flat fees for the billed part `[from, to)` of the period; with `only`, just the fees of that
/// timing.
fn flat_lines(
    plan: &Plan,
    ctx: &QuoteContext,
    from: Timestamp,
    to: Timestamp,
    suffix: Option<&str>,
    only: Option<FeeTiming>,
    out: &mut Vec<RawLine>,
) -> Result<(), RateError> {
    let period = &ctx.period;
    for charge in &plan.charges {
        let PriceModel::Flat {
            amount,
            prorate,
            timing,
        } = charge.model
        else {
            continue;
        };
        if only.is_some_and(|only| only != timing) {
            continue;
        }
        let (fraction, exact) = flat_amount(plan, ctx, from, to, charge, amount.0, prorate)?;
        if let Some(line) = flat_not_on_this_split_line(ctx, charge, timing) {
            out.push(line);
            continue;
        }
        let row = if fraction == Decimal::ONE {
            BreakdownRow::fee(format!("{} for the period", normalized_text(amount)), exact)
        } else {
            BreakdownRow::units(
                format!(
                    "{} × {} of the period ({} to {}, prorated by {})",
                    normalized_text(amount),
                    normalized_text(fraction.round_dp(6)),
                    ctx.calendar.format(from.max(period.start)),
                    ctx.calendar.format(to.min(period.end)),
                    match plan.proration {
                        crate::plan::ProrationMode::Days => "days",
                        crate::plan::ProrationMode::Seconds => "seconds",
                    }
                ),
                fraction,
                amount.0,
                exact,
            )
        };
        out.push(RawLine {
            charge_id: charge.id.clone(),
            origin: if suffix.is_some() {
                LineOrigin::PreviousPlan
            } else {
                LineOrigin::Charge
            },
            description: suffixed(describe(charge, None), suffix),
            metric: None,
            group: GroupKey::new(),
            quantity: fraction,
            unit_price: Some(amount.0),
            priced: Priced {
                amount: exact,
                breakdown: vec![row],
            },
        });
    }
    Ok(())
}

/// On a split line of the period, a flat fee billed on another line: advance fees on the
/// first, arrears fees on the last (as OpenMeter's flat price of a progressively billed
/// line). Its line bills 0 and says where the fee is billed.
fn flat_not_on_this_split_line(
    ctx: &QuoteContext,
    charge: &Charge,
    timing: FeeTiming,
) -> Option<RawLine> {
    let split = ctx.split.as_ref()?;
    let billed_on = match timing {
        FeeTiming::Advance if !split.first => "an advance fee is billed on the first line",
        FeeTiming::Arrears if !split.last => "an arrears fee is billed on the last line",
        _ => return None,
    };
    Some(RawLine {
        charge_id: charge.id.clone(),
        origin: LineOrigin::Charge,
        description: describe(charge, None),
        metric: None,
        group: GroupKey::new(),
        quantity: Decimal::ZERO,
        unit_price: None,
        priced: Priced {
            amount: Decimal::ZERO,
            breakdown: vec![BreakdownRow::fee(
                format!("split line: {billed_on} of the period"),
                Decimal::ZERO,
            )],
        },
    })
}

/// On a split line of the period, what the earlier lines billed for a usage charge, taken
/// off its cumulative amount: `round(cumulative) − billed before` (OpenMeter's delta rating,
/// `PreviouslyBilledAmount`).
fn billed_before_line(ctx: &QuoteContext, charge: &Charge, metric: &Metric) -> Option<RawLine> {
    let split = ctx.split.as_ref()?;
    let billed = *split.billed_before.get(&charge.id)?;
    let amount = -billed;
    Some(RawLine {
        charge_id: charge.id.clone(),
        origin: LineOrigin::BilledBefore,
        description: format!(
            "{}: billed by the period's earlier lines",
            describe(charge, Some(metric))
        ),
        metric: Some(metric.code.clone()),
        group: GroupKey::new(),
        quantity: Decimal::ONE,
        unit_price: Some(amount),
        priced: Priced {
            amount,
            breakdown: vec![BreakdownRow::fee(
                format!(
                    "billed for {} to {}",
                    ctx.calendar.format(ctx.period.start),
                    ctx.calendar.format(split.from)
                ),
                amount,
            )],
        },
    })
}

/// On a split line other than the period's last, a volume charge bills nothing: its tier is
/// chosen by the period's whole quantity, known on the last line (OpenMeter's volume tiered
/// price is not billed progressively).
fn volume_waits_for_the_last_line(lines: &mut [RawLine]) {
    for line in lines {
        line.priced = Priced {
            amount: Decimal::ZERO,
            breakdown: vec![BreakdownRow::fee(
                "split line: a volume charge is rated on the last line of the period".to_owned(),
                Decimal::ZERO,
            )],
        };
        line.unit_price = None;
    }
}

/// Lines of usage-based charges, for the plan in force over `billed` (the part of the period
/// it bills, which prorates the units of a charge with `usage_proration`).
#[allow(clippy::too_many_arguments)]
fn usage_lines(
    plan: &Plan,
    customer: &Customer,
    ctx: &QuoteContext,
    mut metered: MeteredUsage,
    suffix: Option<&str>,
    billed: (Timestamp, Timestamp),
    plugins: &dyn PluginHost,
    out: &mut Vec<RawLine>,
) -> Result<(), RateError> {
    for charge in &plan.charges {
        if matches!(charge.model, PriceModel::Flat { .. }) {
            continue;
        }
        let Some(metric) = charge
            .metric
            .as_ref()
            .and_then(|code| plan.metrics.iter().find(|m| &m.code == code))
        else {
            continue;
        };
        let groups = metered.metrics.remove(&metric.code).unwrap_or_default();
        // Several charges may price one metric: put the groups back for the next.
        let groups_for_next = groups.clone();
        let mut lines = charge_lines(plan, customer, ctx, charge, metric, groups, billed, plugins)?;
        metered.metrics.insert(metric.code.clone(), groups_for_next);
        let cap = plan.charge_maximum == ChargeMaximum::BeforeDiscounts;
        // A previous plan's minimums apply before discounts: the shortfall lines after
        // discounts are the plan in force's. A split line raises a charge to its minimum on
        // the period's last line only.
        let last_line = ctx.split.as_ref().is_none_or(|split| split.last);
        let volume_waits = ctx
            .split
            .as_ref()
            .is_some_and(|split| !split.last && !split.volume_each_line);
        let floor = (plan.charge_minimum == ChargeMinimum::BeforeDiscounts || suffix.is_some())
            && last_line;
        if volume_waits && matches!(charge.model, PriceModel::Volume { .. }) {
            volume_waits_for_the_last_line(&mut lines);
        } else {
            apply_charge_bounds(charge, metric, &mut lines, cap, floor)?;
        }
        if suffix.is_none()
            && let Some(line) = billed_before_line(ctx, charge, metric)
        {
            lines.push(line);
        }
        for line in &mut lines {
            line.description = suffixed(std::mem::take(&mut line.description), suffix);
            if suffix.is_some() {
                line.origin = LineOrigin::PreviousPlan;
            }
        }
        out.extend(lines);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn charge_lines(
    plan: &Plan,
    customer: &Customer,
    ctx: &QuoteContext,
    charge: &Charge,
    metric: &Metric,
    mut groups: Vec<GroupUsage>,
    billed: (Timestamp, Timestamp),
    plugins: &dyn PluginHost,
) -> Result<Vec<RawLine>, RateError> {
    let context = format!("charge `{}`", charge.id);
    if groups.is_empty() && metric.group_by.is_empty() {
        groups.push(GroupUsage {
            group: GroupKey::new(),
            raw_value: Decimal::ZERO,
            quantity: Decimal::ZERO,
            n_events: 0,
            transactions: None,
            values: None,
            dated: None,
        });
    }
    let description = describe(charge, Some(metric));
    // Allowance, consumed by groups in sorted order.
    let mut allowance = allowance_off_quantity(charge);
    let mut billable = Vec::with_capacity(groups.len());
    for group in &groups {
        let used = allowance.min(group.quantity).max(Decimal::ZERO);
        allowance -= used;
        billable.push((used, group.quantity - used));
    }
    if let PriceModel::Custom { plugin, config } = &charge.model {
        return plugin_lines(
            plan,
            customer,
            ctx,
            charge,
            metric,
            (plugin, config),
            &groups,
            &billable,
            &description,
            plugins,
        );
    }
    let mut lines = Vec::with_capacity(groups.len());
    for (group, (used, quantity)) in groups.into_iter().zip(billable) {
        let (share, held_row) = match charge.usage_proration {
            UsageProration::DaysHeld => days_held_units(ctx, charge, metric, billed, &group)?,
            _ => (prorated_units(plan, ctx, charge, billed, quantity)?, None),
        };
        let lago_graduated = match &charge.model {
            // Dated events run through Lago's calculator even when every unit was held the
            // whole cycle: its flat amounts follow the highest units reached.
            PriceModel::Graduated { tiers }
                if charge.usage_proration == UsageProration::DaysHeld
                    && (share.is_some() || group.dated.as_ref().is_some_and(|d| !d.is_empty())) =>
            {
                Some(tiers)
            }
            _ => None,
        };
        let priced_group = match lago_graduated {
            // Lago's prorated graduated ranges: event by event, not a share of the units.
            Some(tiers) => {
                let events = days_held_events(ctx, charge, billed, &group)?;
                Some((
                    price::lago_prorated_graduated_into::<Priced>(tiers, &events),
                    None,
                ))
            }
            None => price_group::<Priced>(plan, charge, metric, &group, used, quantity, share)?,
        };
        let Some((mut priced, unit_price)) = priced_group else {
            continue;
        };
        let quantity = share.map_or(quantity, |(_, billed_units)| billed_units);
        if let Ok(priced) = &mut priced
            && metric.negative_values == NegativeValues::FloorAtZero
            && group.raw_value < Decimal::ZERO
        {
            priced.breakdown.insert(
                0,
                BreakdownRow::units(
                    format!(
                        "aggregated value {} is negative: billed as 0 (negative_values floor_at_zero)",
                        group.raw_value.normalize()
                    ),
                    Decimal::ZERO,
                    Decimal::ZERO,
                    Decimal::ZERO,
                ),
            );
        }
        if let Ok(priced) = &mut priced
            && !used.is_zero()
        {
            priced.breakdown.insert(
                0,
                BreakdownRow::units(
                    format!("{} units included in the plan", normalized_text(used)),
                    used,
                    Decimal::ZERO,
                    Decimal::ZERO,
                ),
            );
        }
        if let (Ok(priced), Some(row)) = (&mut priced, held_row) {
            priced.breakdown.insert(0, row);
        }
        if let Ok(priced) = &mut priced
            && let Some(values) = &group.values
        {
            priced.breakdown.insert(0, unique_values_row(values));
        }
        let priced = priced.map_err(overflow(context.clone()))?;
        lines.push(RawLine {
            charge_id: charge.id.clone(),
            origin: LineOrigin::Charge,
            description: group_description(&description, &group.group),
            metric: Some(metric.code.clone()),
            group: group.group,
            quantity,
            unit_price,
            priced,
        });
    }
    Ok(lines)
}

/// The lines a custom price plugin answers for a charge's groups (their billable
/// quantities), checked: a breakdown is summed with checked arithmetic and completed to the
/// line's amount.
#[allow(clippy::too_many_arguments)]
fn plugin_lines(
    plan: &Plan,
    customer: &Customer,
    ctx: &QuoteContext,
    charge: &Charge,
    metric: &Metric,
    (plugin, config): (&String, &serde_json::Value),
    groups: &[GroupUsage],
    billable: &[(Decimal, Decimal)],
    description: &str,
    plugins: &dyn PluginHost,
) -> Result<Vec<RawLine>, RateError> {
    let request = PriceRequest {
        plan_id: plan.id.clone(),
        charge_id: charge.id.clone(),
        currency: ctx.currency.code.clone(),
        config: config.clone(),
        customer_id: customer.id.clone(),
        customer_attributes: customer.attributes.clone(),
        period_start: ctx.calendar.format(ctx.period.start),
        period_end: ctx.calendar.format(ctx.period.end),
        quantities: groups
            .iter()
            .zip(billable)
            .map(|(g, (_, q))| GroupedQuantity {
                group: g.group.clone(),
                quantity: *q,
            })
            .collect(),
    };
    let priced = plugins
        .price(plugin, &request)
        .map_err(|source| RateError::Plugin {
            charge: charge.id.clone(),
            error: source,
        })?;
    // Any `PluginHost` may answer, so the sums are checked here too: a breakdown past the
    // decimal range is the plugin's invalid output, never a panic.
    let overflow = |i: usize| RateError::Plugin {
        charge: charge.id.clone(),
        error: PluginError::InvalidOutput {
            plugin: plugin.clone(),
            message: format!("`price`: line {i}: its breakdown overflows a decimal"),
        },
    };
    priced
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let breakdown_sum = line
                .breakdown
                .iter()
                .try_fold(Decimal::ZERO, |sum, row| sum.checked_add(row.amount.0))
                .ok_or_else(|| overflow(i))?;
            let mut breakdown = line.breakdown;
            if breakdown.is_empty() || breakdown_sum != line.amount {
                let rest = line
                    .amount
                    .checked_sub(breakdown_sum)
                    .ok_or_else(|| overflow(i))?;
                breakdown.push(BreakdownRow::fee(
                    format!("computed by plugin {plugin}"),
                    rest,
                ));
            }
            Ok(RawLine {
                charge_id: charge.id.clone(),
                origin: LineOrigin::Charge,
                description: if line.description.is_empty() {
                    description.to_owned()
                } else {
                    line.description
                },
                metric: Some(metric.code.clone()),
                group: line.group,
                quantity: line.quantity,
                unit_price: None,
                priced: Priced {
                    amount: line.amount,
                    breakdown,
                },
            })
        })
        .collect()
}

/// A group priced by a charge's model: the amount and breakdown (or the overflow that kept it
/// from being computed), and the unit price when the model has one.
type GroupPrice<R = Priced> = (Result<R, Overflow>, Option<Decimal>);

/// The row of a unique count that follows `add` / `remove` operations: the values it carried
/// in and those active at the end (the next period's `carry_in`).
fn unique_values_row(values: &crate::meter::UniqueValues) -> BreakdownRow {
    let list = |values: &[String]| {
        if values.is_empty() {
            String::new()
        } else {
            format!(" ({})", values.join(", "))
        }
    };
    BreakdownRow::units(
        format!(
            "{} values carried over{}; {} active at the end{}",
            values.carried_in.len(),
            list(&values.carried_in),
            values.active.len(),
            list(&values.active)
        ),
        Decimal::from(values.active.len()),
        Decimal::ZERO,
        Decimal::ZERO,
    )
}

/// A percentage charge's `included` spent on its transactions, as Lago spends its free amount
/// (`free_units_per_total_aggregation`) together with free events or per-transaction bounds:
/// `None` when the allowance is taken off the quantity (every other charge).
fn free_amount_per_transaction(charge: &Charge) -> Option<Decimal> {
    let included = charge
        .included
        .map(Decimal::from)
        .filter(|i| !i.is_zero())?;
    match &charge.model {
        PriceModel::Percentage {
            tiers,
            min_per_transaction,
            max_per_transaction,
            free_events,
            fixed_fee_within_free_amount,
            ..
        } if tiers.is_empty()
            && (min_per_transaction.is_some()
                || max_per_transaction.is_some()
                || free_events.is_some()
                || !fixed_fee_within_free_amount.is_default()) =>
        {
            Some(included)
        }
        _ => None,
    }
}

/// The units of a charge's allowance taken off its quantity before pricing (none when the
/// allowance is spent on transactions: [`free_amount_per_transaction`]).
fn allowance_off_quantity(charge: &Charge) -> Decimal {
    match free_amount_per_transaction(charge) {
        Some(_) => Decimal::ZERO,
        None => charge.included.map_or(Decimal::ZERO, Decimal::from),
    }
}

/// Prices one group's billable `quantity` (after `used` units of the allowance) with the
/// charge's model: the priced amount (or the overflow), and the unit price when there is one.
/// With `usage_proration` `tier_by_full_units` and part of the period billed: the share of
/// the period billed and the units it bills (the full units × the share, multiplied before
/// dividing, as flat fees are). `None` when the units are billed as they are.
fn prorated_units(
    plan: &Plan,
    ctx: &QuoteContext,
    charge: &Charge,
    (from, to): (Timestamp, Timestamp),
    quantity: Decimal,
) -> Result<Option<(Decimal, Decimal)>, RateError> {
    if charge.usage_proration == UsageProration::None {
        return Ok(None);
    }
    let (share, billed_units) = prorated(
        &ctx.calendar,
        plan.proration,
        &ctx.period,
        from,
        to,
        quantity,
    )
    .map_err(overflow(format!("charge `{}`", charge.id)))?;
    Ok((share != Decimal::ONE).then_some((share, billed_units)))
}

/// The share and units billed by `days_held` (`None`: the full units), and its breakdown row.
type HeldUnits = (Option<(Decimal, Decimal)>, Option<BreakdownRow>);

/// With `usage_proration` `days_held`: the units held by day over the billed part `[from,
/// to)` (Lago's prorated recurring sum): the carried-in value × the billed days ÷ the cycle's
/// days, plus each event's value × the local days from its date to `to` ÷ the cycle's days,
/// rounded up to 5 decimals; with the share of the full units it is, and the breakdown row
/// saying so. `None` when that is the full quantity (every unit held the whole cycle).
/// With `usage_proration` `days_held` on a graduated charge: the (full, prorated) value of
/// the carried-in units (held over the billed part) and of each event in time order (its value
/// × its local days left ÷ the cycle's days, unrounded), as Lago's prorated sum gives
/// `event_aggregation` and `event_prorated_aggregation` (`prorated_aggregations/sum_service.rb`,
/// `per_event_aggregation`).
fn days_held_events(
    ctx: &QuoteContext,
    charge: &Charge,
    (from, to): (Timestamp, Timestamp),
    group: &GroupUsage,
) -> Result<Vec<(Decimal, Decimal)>, RateError> {
    let context = || format!("charge `{}`", charge.id);
    let cal = &ctx.calendar;
    let days = |at: Timestamp| cal.fraction_parts(ProrationMode::Days, &ctx.period, at, to);
    let mut dated: Vec<(Timestamp, Decimal)> = group.dated.as_deref().unwrap_or_default().to_vec();
    crate::sort::sort_by(&mut dated, |a, b| a.0.cmp(&b.0));
    let events_sum = dated
        .iter()
        .try_fold(Decimal::ZERO, |sum, (_, value)| price::add(sum, *value))
        .map_err(overflow(context()))?;
    let carried = price::sub(group.raw_value, events_sum).map_err(overflow(context()))?;
    let share_of = |value: Decimal, (held, cycle): (i64, i64)| -> Result<Decimal, RateError> {
        if cycle == 0 {
            return Ok(Decimal::ZERO);
        }
        price::mul(value, Decimal::from(held))
            .and_then(|v| price::div(v, Decimal::from(cycle)))
            .map_err(overflow(context()))
    };
    let mut events = Vec::with_capacity(dated.len() + 1);
    if !carried.is_zero() {
        events.push((carried, share_of(carried, days(from))?));
    }
    for (at, value) in dated {
        events.push((value, share_of(value, days(at))?));
    }
    Ok(events)
}

fn days_held_units(
    ctx: &QuoteContext,
    charge: &Charge,
    metric: &Metric,
    (from, to): (Timestamp, Timestamp),
    group: &GroupUsage,
) -> Result<HeldUnits, RateError> {
    let context = || format!("charge `{}`", charge.id);
    let cal = &ctx.calendar;
    let days = |at: Timestamp| cal.fraction_parts(ProrationMode::Days, &ctx.period, at, to);
    let dated = group.dated.as_deref().unwrap_or_default();
    let events_sum = dated
        .iter()
        .try_fold(Decimal::ZERO, |sum, (_, value)| price::add(sum, *value))
        .map_err(overflow(context()))?;
    // The value carried in: what the events did not add.
    let carried = price::sub(group.raw_value, events_sum).map_err(overflow(context()))?;
    let (carried_days, cycle_days) = days(from);
    let mut unit_days =
        price::mul(carried, Decimal::from(carried_days)).map_err(overflow(context()))?;
    for (at, value) in dated {
        let (held, _) = days(*at);
        let weighted = price::mul(*value, Decimal::from(held)).map_err(overflow(context()))?;
        unit_days = price::add(unit_days, weighted).map_err(overflow(context()))?;
    }
    let held = price::div(unit_days, Decimal::from(cycle_days))
        .map_err(overflow(context()))?
        .round_dp_with_strategy(5, rust_decimal::RoundingStrategy::ToPositiveInfinity)
        .normalize();
    let held = metric.negative_values.apply(held);
    if held == group.quantity {
        return Ok((None, None));
    }
    let share = if group.quantity.is_zero() {
        Decimal::ZERO
    } else {
        price::div(held, group.quantity).map_err(overflow(context()))?
    };
    let row = BreakdownRow::units(
        format!(
            "{} units held by day: {} carried over × {carried_days}/{cycle_days} days, {} events × their days left/{cycle_days}; {} rounded up to 5 dp",
            normalized_text(group.quantity),
            normalized_text(carried),
            dated.len(),
            normalized_text(held)
        ),
        held,
        Decimal::ZERO,
        Decimal::ZERO,
    );
    Ok((Some((share, held)), Some(row)))
}

fn price_group<R: Rows>(
    plan: &Plan,
    charge: &Charge,
    metric: &Metric,
    group: &GroupUsage,
    used: Decimal,
    quantity: Decimal,
    share: Option<(Decimal, Decimal)>,
) -> Result<Option<GroupPrice<R>>, RateError> {
    let convention = plan.tier_convention;
    check_within_last_tier(plan, charge, quantity)?;
    Ok(Some(match &charge.model {
        // Priced before this loop.
        PriceModel::Flat { .. } | PriceModel::Custom { .. } => return Ok(None),
        PriceModel::PerUnit { unit_price } => match share {
            Some((_, billed_units)) => (
                price::per_unit_into(billed_units, unit_price.0),
                Some(unit_price.0),
            ),
            None => (
                price::per_unit_into(quantity, unit_price.0),
                Some(unit_price.0),
            ),
        },
        PriceModel::Graduated { tiers } | PriceModel::Volume { tiers }
            if charge.zero_usage == ZeroUsage::FirstTierFlatFee && quantity <= Decimal::ZERO =>
        {
            (price::first_tier_fee_at_zero_into(tiers, convention), None)
        }
        PriceModel::Graduated { tiers } => (
            price::graduated_into(tiers, quantity, convention, Decimal::ONE),
            None,
        ),
        PriceModel::Volume { tiers } if share.is_some() => {
            let (share, billed_units) = share.unwrap_or((Decimal::ONE, quantity));
            let up_tos: Vec<_> = tiers.iter().map(|t| t.up_to.map(Decimal::from)).collect();
            let unit_price = tiers
                .get(price::tier_reached(&up_tos, quantity, convention))
                .map(|t| Decimal::from(t.unit_price));
            (
                price::volume_prorated_into(
                    tiers,
                    quantity,
                    billed_units,
                    (charge.usage_proration != UsageProration::DaysHeld).then_some(share),
                    convention,
                ),
                unit_price,
            )
        }
        PriceModel::Volume { tiers } => {
            let up_tos: Vec<_> = tiers.iter().map(|t| t.up_to.map(Decimal::from)).collect();
            let unit_price = tiers
                .get(price::tier_reached(&up_tos, quantity, convention))
                .map(|t| t.unit_price);
            (
                price::volume_into(tiers, quantity, convention),
                unit_price.map(Decimal::from),
            )
        }
        PriceModel::Stairstep { steps } => {
            (price::stairstep_into(steps, quantity, convention), None)
        }
        PriceModel::Package {
            package_size,
            package_price,
            free_units,
            rounding,
        } => (
            price::package_into(
                quantity,
                package_size.0,
                package_price.0,
                free_units.map_or(Decimal::ZERO, Decimal::from),
                *rounding,
            ),
            None,
        ),
        PriceModel::Percentage {
            percent,
            tiers,
            fixed_fee,
            min_per_transaction,
            max_per_transaction,
            free_events,
            fixed_fee_within_free_amount,
        } => {
            let terms = PercentageTerms {
                percent: (*percent).map(Decimal::from),
                tiers,
                fixed_fee: (*fixed_fee).map(Decimal::from),
                min_per_transaction: (*min_per_transaction).map(Decimal::from),
                max_per_transaction: (*max_per_transaction).map(Decimal::from),
                free_events: *free_events,
                waive_fixed_fee_within_free_amount: !fixed_fee_within_free_amount.is_default(),
            };
            // Zero usage of a charge with free events (or a fixed fee waived within its free
            // amount) has no transactions to free.
            let no_transactions: &[Decimal] = &[];
            let transactions = match &group.transactions {
                Some(transactions) => Some(transactions.as_slice()),
                None if (free_events.is_some() || !fixed_fee_within_free_amount.is_default())
                    && quantity.is_zero() =>
                {
                    Some(no_transactions)
                }
                None => None,
            };
            if terms.needs_transactions() && transactions.is_none() {
                return Err(RateError::Charge {
                    charge: charge.id.clone(),
                    message: format!(
                        "per-transaction minimum/maximum, free events and a fixed fee waived within the free amount need each transaction: send raw events or `transactions` for metric `{}`",
                        metric.code
                    ),
                });
            }
            if let (Some(free_amount), Some(transactions)) =
                (free_amount_per_transaction(charge), transactions)
            {
                // The allowance was not taken off the quantity: Lago spends it on the
                // transactions themselves.
                return Ok(Some((
                    price::percentage_free_amount_into(
                        terms,
                        group.quantity,
                        free_amount,
                        transactions,
                    ),
                    None,
                )));
            }
            if !used.is_zero() && terms.needs_transactions() {
                // Graduated percentage tiers with per-transaction terms (refused by validation).
                return Err(RateError::Charge {
                    charge: charge.id.clone(),
                    message:
                        "an allowance (`included`) on percentage tiers cannot be combined with per-transaction bounds or free events"
                            .to_owned(),
                });
            }
            if fixed_fee.is_some_and(|f| !f.is_zero()) && group.n_events == 0 && !quantity.is_zero()
            {
                return Err(RateError::Charge {
                    charge: charge.id.clone(),
                    message: format!(
                        "a fixed fee per transaction needs the number of transactions: send raw events or `transactions` for metric `{}`",
                        metric.code
                    ),
                });
            }
            (
                price::percentage_into(terms, quantity, group.n_events, transactions, convention),
                None,
            )
        }
        PriceModel::Matrix {
            dimensions,
            prices,
            default_unit_price,
        } => {
            let values: Vec<&str> = dimensions
                .iter()
                .map(|d| group.group.get(d).map_or("(none)", String::as_str))
                .collect();
            let unit_price = prices
                .iter()
                .find(|p| p.values.iter().map(String::as_str).eq(values.iter().copied()))
                .map(|p| p.unit_price)
                .or(*default_unit_price)
                .ok_or_else(|| RateError::Charge {
                    charge: charge.id.clone(),
                    message: format!("no matrix price for {dimensions:?} = {values:?} and no `default_unit_price`"),
                })?;
            (
                price::per_unit_into(quantity, unit_price.0),
                Some(unit_price.0),
            )
        }
    }))
}

/// With `last_tier` `bounded`, a quantity beyond the last tier's `up_to` has no price: an
/// error naming the charge, the quantity and the bound (at or beyond it with
/// `lower_inclusive`, where the bound itself belongs to the next tier, which does not exist).
fn check_within_last_tier(
    plan: &Plan,
    charge: &Charge,
    quantity: Decimal,
) -> Result<(), RateError> {
    // The field is named only in the error: a quantity within bounds formats nothing.
    let (bound, field, n_bounds) = match &charge.model {
        PriceModel::Graduated { tiers }
        | PriceModel::Volume { tiers }
        | PriceModel::Percentage { tiers, .. } => {
            (tiers.last().and_then(|t| t.up_to), "tiers", tiers.len())
        }
        PriceModel::Stairstep { steps } => {
            (steps.last().and_then(|s| s.up_to), "steps", steps.len())
        }
        _ => (None, "", 0),
    };
    let Some(bound) = bound else { return Ok(()) };
    let beyond = match plan.tier_convention {
        TierConvention::UpperInclusive => quantity > bound.0,
        TierConvention::LowerInclusive => quantity >= bound.0,
    };
    if !beyond {
        return Ok(());
    }
    Err(RateError::Charge {
        charge: charge.id.clone(),
        message: format!(
            "quantity {} is beyond the last tier (`model.{field}[{}].up_to` {}, with `last_tier` `bounded`): it has no price",
            quantity.normalize(),
            n_bounds.saturating_sub(1),
            bound.normalize()
        ),
    })
}

fn group_description(description: &str, group: &GroupKey) -> String {
    if group.is_empty() {
        return description.to_owned();
    }
    let values: Vec<String> = group.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{description} [{}]", values.join(", "))
}

/// What a charge's minimum spend or maximum cap adds to its lines' `total` (negative for a
/// cap), and the breakdown text saying so; `None` within the bounds.
fn charge_adjustment(
    charge: &Charge,
    minimum: Option<Dec>,
    maximum: Option<Dec>,
    total: Decimal,
) -> Result<Option<(Decimal, String)>, RateError> {
    Ok(match (minimum, maximum) {
        (Some(min), _) if total < min.0 => Some((
            price::sub(min.0, total).map_err(overflow(format!("charge `{}`", charge.id)))?,
            format!("raised to the charge minimum {}", normalized_text(min)),
        )),
        (_, Some(max)) if total > max.0 => Some((
            price::sub(max.0, total).map_err(overflow(format!("charge `{}`", charge.id)))?,
            format!("capped at the charge maximum {}", normalized_text(max)),
        )),
        _ => None,
    })
}

/// A charge's minimum spend and maximum cap, over all its lines.
fn apply_charge_bounds(
    charge: &Charge,
    metric: &Metric,
    lines: &mut Vec<RawLine>,
    cap: bool,
    floor: bool,
) -> Result<(), RateError> {
    let maximum = if cap { charge.maximum } else { None };
    let minimum = if floor { charge.minimum } else { None };
    let total: Decimal = lines
        .iter()
        .try_fold(Decimal::ZERO, |acc, l| price::add(acc, l.priced.amount))
        .map_err(overflow(format!("charge `{}`", charge.id)))?;
    let Some((amount, description)) = charge_adjustment(charge, minimum, maximum, total)? else {
        return Ok(());
    };
    if let [line] = lines.as_mut_slice() {
        line.priced.amount += amount;
        line.priced
            .breakdown
            .push(BreakdownRow::fee(description, amount));
        line.unit_price = None;
    } else {
        lines.push(RawLine {
            charge_id: charge.id.clone(),
            origin: LineOrigin::Charge,
            description: format!("{}: {description}", describe(charge, Some(metric))),
            metric: Some(metric.code.clone()),
            group: GroupKey::new(),
            quantity: Decimal::ZERO,
            unit_price: None,
            priced: Priced {
                amount,
                breakdown: vec![BreakdownRow::fee(description, amount)],
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{MetricAccumulator, NoPlugins, PricedLine};

    /// A price plugin that answers with fixed lines (amounts near the decimal range's edge).
    struct FixedPrice(Vec<PricedLine>);

    impl PluginHost for FixedPrice {
        fn metric(
            &self,
            plugin: &str,
            _config: &serde_json::Value,
        ) -> Result<Box<dyn MetricAccumulator>, PluginError> {
            Err(PluginError::NotFound(plugin.to_owned()))
        }

        fn price(
            &self,
            _plugin: &str,
            _request: &PriceRequest,
        ) -> Result<Vec<PricedLine>, PluginError> {
            Ok(self.0.clone())
        }
    }

    fn priced_line(amount: Decimal, rows: &[Decimal]) -> PricedLine {
        PricedLine {
            description: String::new(),
            group: BTreeMap::new(),
            quantity: Decimal::ONE,
            amount,
            breakdown: rows
                .iter()
                .map(|a| BreakdownRow::fee("row".into(), *a))
                .collect(),
        }
    }

    fn quote_fixed(lines: Vec<PricedLine>) -> Result<Invoice, RateError> {
        quote_fixed_with(lines, serde_json::json!({}))
    }

    /// `charge` fields are merged into the custom charge (`minimum`, `maximum`).
    fn quote_fixed_with(
        lines: Vec<PricedLine>,
        charge: serde_json::Value,
    ) -> Result<Invoice, RateError> {
        let mut plan = serde_json::json!({
            "id": "p", "currency": "USD",
            "metrics": [{"code": "kwh", "event": "kwh", "aggregation": {"type": "sum", "property": "kwh"}}],
            "charges": [{"id": "energy", "metric": "kwh",
                         "model": {"type": "custom", "plugin": "fixed@1.0.0", "config": {}}}]
        });
        for (key, value) in charge.as_object().unwrap() {
            plan["charges"][0][key] = value.clone();
        }
        let plan: Plan = serde_json::from_value(plan).unwrap();
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "period": {"containing": "2026-11-15"}, "quantities": {"kwh": "1"}
        }))
        .unwrap();
        quote(&plan, &usage, &FixedPrice(lines))
    }

    /// Every cause in an error's chain, as `{:#}` prints them.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Regressions: messages that said their text twice (`{:#}` of an error whose `source` it
    /// already displayed), hid a decimal's reason behind "did not match any variant of untagged
    /// enum QuantityInput", or numbered a quote without subscription as period 322.
    #[test]
    fn usage_messages_say_it_once_and_say_why() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "id": "p", "currency": "USD",
            "metrics": [{"code": "calls", "event": "api", "aggregation": {"type": "count"}}],
            "charges": [{"id": "c", "metric": "calls", "model": {"type": "per_unit", "unit_price": "0.01"}}]
        }))
        .unwrap();
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "period": {"containing": "2026-11-02"}, "carry_in": {"calls": "5"},
            "events": [{"id": "a", "timestamp": "2026-11-02T00:00:00Z", "code": "api"}]
        }))
        .unwrap();
        let error = quote(&plan, &usage, &NoPlugins).unwrap_err();
        assert_eq!(
            chain(&error),
            "metric `calls`: carry-in applies only to time-weighted metrics"
        );
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "subscription": {"start": "2026-12-05"}, "period": {"containing": "2026-11-02"}
        }))
        .unwrap();
        let error = quote(&plan, &usage, &NoPlugins).unwrap_err();
        let text = chain(&error);
        assert!(text.starts_with("$.period: "), "{text}");
        assert_eq!(text.matches("before").count(), 1, "{text}");

        let error =
            serde_json::from_str::<Usage>(r#"{"quantities": {"calls": 1234567890.1234567}}"#)
                .unwrap_err()
                .to_string();
        assert!(
            error.starts_with("the JSON number 1234567890.1234567 has more digits than a float holds exactly: write it as a string"),
            "{error}"
        );
        let error =
            serde_json::from_str::<Usage>(r#"{"quantities": {"calls": [{"quantity": "x"}]}}"#)
                .unwrap_err()
                .to_string();
        assert!(error.starts_with("`x` is not a decimal number"), "{error}");

        let usage: Usage =
            serde_json::from_value(serde_json::json!({"period": {"containing": "2026-11-02"}}))
                .unwrap();
        let invoice = quote(&plan, &usage, &NoPlugins).unwrap();
        assert_eq!(invoice.period.index, 0);
        assert_eq!(invoice.period.start, "2026-11-01T00:00:00+00:00");
    }

    /// Any `PluginHost` may answer: a breakdown past the decimal range is the plugin's invalid
    /// output, not a panic, and a remainder row is added only when it can be held.
    #[test]
    fn plugin_breakdowns_near_the_decimal_range_are_checked_not_panicking() {
        let max = Decimal::MAX;
        for (amount, rows) in [(max, vec![max, max]), (max, vec![-max]), (-max, vec![max])] {
            let error = quote_fixed(vec![priced_line(amount, &rows)]).unwrap_err();
            let RateError::Plugin {
                charge,
                error: source,
            } = &error
            else {
                panic!("unexpected {error:?}")
            };
            assert_eq!(charge, "energy");
            assert_eq!(
                source,
                &PluginError::InvalidOutput {
                    plugin: "fixed@1.0.0".into(),
                    message: "`price`: line 0: its breakdown overflows a decimal".into(),
                }
            );
        }
        // A breakdown short of its amount gets the rest as a row, at the edge too.
        let invoice = quote_fixed(vec![priced_line(max, &[Decimal::ONE])]).unwrap();
        let rows = &invoice.lines[0].breakdown;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].amount.0, max - Decimal::ONE);
        assert_eq!(invoice.total.0, max);
        // Two lines whose sum the invoice cannot hold: an error, not a panic.
        let error = quote_fixed(vec![priced_line(max, &[]), priced_line(max, &[])]).unwrap_err();
        assert!(
            matches!(&error, RateError::Overflow { context } if context == "charge `energy`"),
            "{error:?}"
        );
        // A charge minimum far above a negative total: the raise does not fit, an error.
        let error = quote_fixed_with(
            vec![priced_line(-max, &[])],
            serde_json::json!({"minimum": max.to_string()}),
        )
        .unwrap_err();
        assert!(
            matches!(&error, RateError::Overflow { context } if context == "charge `energy`"),
            "{error:?}"
        );
    }

    fn quote_json(plan: serde_json::Value, usage: serde_json::Value) -> Invoice {
        let plan: Plan = serde_json::from_value(plan).unwrap();
        let usage: Usage = serde_json::from_value(usage).unwrap();
        quote(&plan, &usage, &NoPlugins).unwrap()
    }

    fn line_amounts(invoice: &Invoice) -> Vec<(String, String)> {
        invoice
            .lines
            .iter()
            .map(|l| {
                let origin = match l.origin {
                    LineOrigin::PreviousPlan => "previous plan: ",
                    _ => "",
                };
                (format!("{origin}{}", l.charge_id), l.amount.0.to_string())
            })
            .collect()
    }

    /// Regression: the previous plan's advance fee was both charged for the used part and
    /// credited for the unused part, so a 30.00 fee changed on day 10 of 30 netted −10.00
    /// instead of the credit −20.00 alone (it was billed in full at the period start).
    #[test]
    fn plan_change_credits_the_previous_advance_fee_without_charging_it_again() {
        let fees = |advance: &str, arrears: &str| {
            serde_json::json!([
                {"id": "platform", "model": {"type": "flat", "amount": advance, "timing": "advance"}},
                {"id": "support", "model": {"type": "flat", "amount": arrears, "timing": "arrears"}}
            ])
        };
        let previous =
            serde_json::json!({"id": "basic", "currency": "USD", "charges": fees("30.00", "3.00")});
        let plan =
            serde_json::json!({"id": "pro", "currency": "USD", "charges": fees("60.00", "6.00")});
        let usage = serde_json::json!({
            "subscription": {"start": "2026-11-01"},
            "period": {"index": 0},
            "plan_change": {"at": "2026-11-11", "previous_plan": previous}
        });
        let invoice = quote_json(plan, usage);
        let expected = [
            // The previous arrears fee is due for the 10 days it was in force: 3.00 × 10/30.
            ("previous plan: support", "1.00"),
            // The previous advance fee: only its unused 20/30 is credited.
            ("previous plan: platform", "-20.00"),
            ("platform", "40.00"),
            ("support", "4.00"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(id, a)| (id.to_string(), a.to_string()))
            .collect();
        assert_eq!(line_amounts(&invoice), expected);
        assert_eq!(invoice.subtotal.0.to_string(), "25.00");
    }

    /// Regression: proration multiplied the fee by the rounded quotient 1/30 = 0.0333…3, so
    /// 45.15 for one day of a 30-day month came to 1.50499… and rounded half-up to 1.50.
    #[test]
    fn proration_multiplies_before_dividing_so_half_cents_round_up() {
        let plan = serde_json::json!({"id": "p", "currency": "USD",
            "charges": [{"id": "base", "model": {"type": "flat", "amount": "45.15"}}]});
        let usage = serde_json::json!({"subscription": {"start": "2026-11-30", "billing_anchor": "2026-11-01"}});
        let invoice = quote_json(plan, usage);
        assert_eq!(
            invoice.lines[0].exact_amount.0.normalize().to_string(),
            "1.505"
        );
        assert_eq!(invoice.lines[0].amount.0.to_string(), "1.51");
    }

    /// Regression: with a plan change, events after the change were noted as "outside the
    /// period" by the previous plan's aggregation although the new plan billed them.
    #[test]
    fn plan_change_does_not_note_the_other_plans_events_as_outside_the_period() {
        let plan = |id: &str| {
            serde_json::json!({"id": id, "currency": "USD",
                "metrics": [{"code": "calls", "aggregation": {"type": "count"}}],
                "charges": [{"id": "api", "metric": "calls", "model": {"type": "per_unit", "unit_price": "1"}}]})
        };
        let usage = serde_json::json!({
            "subscription": {"start": "2026-11-01"},
            "events": [
                {"id": "before", "timestamp": "2026-11-02T00:00:00Z", "code": "calls"},
                {"id": "after", "timestamp": "2026-11-20T00:00:00Z", "code": "calls"},
                {"id": "outside", "timestamp": "2026-12-02T00:00:00Z", "code": "calls"}
            ],
            "plan_change": {"at": "2026-11-11", "previous_plan": plan("old")}
        });
        let invoice = quote_json(plan("new"), usage);
        assert_eq!(
            invoice.notes,
            vec!["1 events not billed: outside the period".to_owned()]
        );
        assert_eq!(invoice.total.0.to_string(), "2.00");
    }

    /// Regression: errors of the previous plan were reported at `$usage.plan_change…`, which is
    /// not a JSON path of the usage document.
    #[test]
    fn previous_plan_errors_name_their_path_in_the_usage() {
        let plan: Plan =
            serde_json::from_value(serde_json::json!({"id": "new", "currency": "USD"})).unwrap();
        let usage: Usage = serde_json::from_value(serde_json::json!({
            "subscription": {"start": "2026-11-01"},
            "plan_change": {"at": "2026-11-11", "previous_plan": {"id": "old", "currency": "XYZ"}}
        }))
        .unwrap();
        let error = quote(&plan, &usage, &NoPlugins).unwrap_err().to_string();
        assert!(
            error.contains("$.plan_change.previous_plan.currency: `XYZ`"),
            "{error}"
        );
    }

    /// Progressive billing: the split lines of a period, each billing its cumulative usage less
    /// what the earlier lines billed, add up to the invoice of the whole period (rounded per
    /// line, fractional unit prices, tier flat fees, a maximum, a minimum, arrears and advance
    /// fees alike).
    #[test]
    fn split_lines_add_up_to_the_whole_period() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "id": "p", "currency": "USD", "interval": "month",
            "metrics": [{"code": "calls", "aggregation": {"type": "sum", "property": "n"}},
                        {"code": "seats", "aggregation": {"type": "max", "property": "n"}}],
            "charges": [
                {"id": "base", "model": {"type": "flat", "amount": "20", "timing": "advance"}},
                {"id": "support", "model": {"type": "flat", "amount": "5", "timing": "arrears"}},
                {"id": "calls", "metric": "calls", "maximum": "10", "model": {"type": "graduated", "tiers": [
                    {"up_to": "100", "unit_price": "0.0133", "flat_fee": "3"},
                    {"up_to": null, "unit_price": "0.0071", "flat_fee": "2"}]}},
                {"id": "seats", "metric": "seats", "minimum": "40", "model": {"type": "volume", "tiers": [
                    {"up_to": "5", "unit_price": "7"}, {"up_to": null, "unit_price": "6.5"}]}}
            ]
        }))
        .unwrap();
        let quote_at = |split: serde_json::Value, calls: &str, seats: &str| {
            let usage: Usage = serde_json::from_value(serde_json::json!({
                "subscription": {"start": "2026-11-01"}, "period": {"index": 0},
                "quantities": {"calls": calls, "seats": seats}, "split_line": split
            }))
            .unwrap();
            quote(&plan, &usage, &NoPlugins).unwrap()
        };
        let charge_amounts = |invoice: &Invoice| -> BTreeMap<String, Decimal> {
            let mut amounts = BTreeMap::new();
            for line in &invoice.lines {
                *amounts.entry(line.charge_id.clone()).or_default() += line.amount.0;
            }
            amounts
        };
        let points = [("2026-11-08", "37", "3"), ("2026-11-19", "151.5", "4")];
        let last = ("1234.5", "6");
        for (calls_whole, seats_whole) in [last, ("151.5", "4"), ("37", "3")] {
            let whole = quote_at(serde_json::Value::Null, calls_whole, seats_whole);
            let mut billed: BTreeMap<String, Decimal> = BTreeMap::new();
            let mut total = Decimal::ZERO;
            let mut from: Option<&str> = None;
            for (to, calls, seats) in points.iter().map(|&(to, c, s)| (Some(to), c, s)).chain([(
                None,
                calls_whole,
                seats_whole,
            )]) {
                let mut split = serde_json::json!({});
                if let Some(from) = from {
                    split["from"] = from.into();
                    let usage_billed: BTreeMap<&String, String> = billed
                        .iter()
                        .filter(|(id, _)| id.as_str() != "base" && id.as_str() != "support")
                        .map(|(id, amount)| (id, amount.to_string()))
                        .collect();
                    split["billed_before"] = serde_json::to_value(usage_billed).unwrap();
                }
                if let Some(to) = to {
                    split["to"] = to.into();
                }
                let invoice = quote_at(split, calls, seats);
                for (id, amount) in charge_amounts(&invoice) {
                    *billed.entry(id).or_default() += amount;
                }
                total += invoice.total.0;
                from = to;
            }
            assert_eq!(
                total, whole.total.0,
                "calls {calls_whole}, seats {seats_whole}"
            );
            assert_eq!(billed, charge_amounts(&whole));
        }
    }
}
