//! One customer's billing period being rated: opened for a [`PreparedPlan`] and what is known
//! of the customer, fed their events one by one, finished into an [`Invoice`].
//!
//! Every path to an invoice goes through a [`PeriodRater`]: [`PreparedPlan::quote`] (a usage
//! document, its events pushed in order), `ratecard rate` (an NDJSON stream, one rater per
//! customer) and the server (a customer's stored events). So a period's invoice is the same
//! whichever of them computes it.
//!
//! A rater is what a usage document's period needs and nothing more: the calendar and period
//! ([`QuoteContext`]), the input hash (taken when it opens), the customer and their credits,
//! and one [`Aggregator`] per plan in force (two across a mid-period plan change, each with its
//! window of the period). An event the aggregators refuse is noted on the invoice with the
//! place the caller gives (`$.events[3]`, `line 12`) and changes nothing.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;

use crate::invoice::Invoice;
use crate::meter::{Aggregator, EventError, MeteredUsage, Outcome, Routing, Window};
use crate::period::PeriodError;
use crate::plan::{Aggregation, Credit, Plan};
use crate::plugin::PluginHost;
use crate::rate::{
    NotBilled, PreparedPlan, QuoteContext, RateError, apply_quantities, check_usage, context,
    price_usage, usage_error,
};
use crate::usage::{
    Customer, CustomerSetup, Event, PeriodSelector, PlanChange, QuantityInput, Timestamp, Usage,
};
use crate::validate::validate_plan;

/// One customer's period being rated (see the [module docs](self)).
pub struct PeriodRater<'a> {
    prepared: &'a PreparedPlan<'a>,
    plugins: &'a dyn PluginHost,
    ctx: QuoteContext,
    customer: Customer,
    credits: Vec<Credit>,
    /// Aggregated quantities given by the usage document, which replace the metered ones.
    quantities: Option<&'a BTreeMap<String, QuantityInput>>,
    input_hash: String,
    /// The plan of the prepared plan, from the plan change (if any) to the period's end.
    current: Segment<'a>,
    previous: Option<Previous<'a>>,
}

impl fmt::Debug for PeriodRater<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeriodRater")
            .field("plan", &self.prepared.plan().id)
            .field("customer", &self.customer.id)
            .field("period", &self.ctx.period)
            .finish_non_exhaustive()
    }
}

/// The aggregation of one plan over its part of the period.
struct Segment<'a> {
    aggregator: Aggregator<'a>,
    /// The events it did not bill, for the invoice's notes.
    not_billed: NotBilled,
}

/// The plan a mid-period change came from, in force until `at`.
struct Previous<'a> {
    plan: &'a Plan,
    segment: Segment<'a>,
    at: Timestamp,
}

/// What [`PeriodRater::open_containing`] found.
#[derive(Debug)]
pub enum Opened<'a> {
    Rating(Box<PeriodRater<'a>>),
    /// The customer's subscription starts after the period: nothing is billed in it.
    NotStarted,
    /// The customer's subscription ended before the period: nothing is billed in it.
    Ended,
}

impl<'a> PeriodRater<'a> {
    /// Opens the period `usage` selects, with its subscription, credits, carry-in, quantities
    /// and plan change; its events are not pushed (push them, or use [`PreparedPlan::quote`]).
    pub fn open(
        prepared: &'a PreparedPlan<'a>,
        usage: &'a Usage,
        plugins: &'a dyn PluginHost,
    ) -> Result<PeriodRater<'a>, RateError> {
        let previous_plan = match &usage.plan_change {
            Some(change) => {
                let report = validate_plan(&change.previous_plan);
                if !report.is_ok() {
                    let issues = report
                        .errors
                        .into_iter()
                        .map(|mut issue| {
                            // `$.charges[0]` of the previous plan is
                            // `$.plan_change.previous_plan.charges[0]` of the usage document.
                            issue.path = issue.path.replacen('$', "$.plan_change.previous_plan", 1);
                            issue
                        })
                        .collect();
                    return Err(RateError::InvalidPlan(issues));
                }
                Some(change.previous_plan.as_ref())
            }
            None => None,
        };
        let mut rater = PeriodRater::open_usage(prepared, usage, previous_plan, plugins)?;
        rater.quantities = Some(&usage.quantities);
        Ok(rater)
    }

    /// Opens the period of `customer`'s own calendar (their timezone, else `default_timezone`,
    /// else UTC; their subscription's anchor) that contains `containing` (a date or date-time
    /// in that timezone), as `ratecard rate --period` and the server's period close do. A
    /// subscription starting inside the calendar period holding the date is rated for its
    /// first (shorter) period; one starting after it has [`Opened::NotStarted`], one that ended
    /// at or before the date has [`Opened::Ended`].
    pub fn open_containing(
        prepared: &'a PreparedPlan<'a>,
        customer_id: &str,
        setup: &CustomerSetup,
        containing: &str,
        default_timezone: Option<&str>,
        plugins: &'a dyn PluginHost,
    ) -> Result<Opened<'a>, RateError> {
        PeriodRater::open_containing_changed(
            prepared,
            customer_id,
            setup,
            containing,
            default_timezone,
            None,
            plugins,
        )
    }

    /// [`PeriodRater::open_containing`] of a period in which the customer moved to the
    /// prepared plan from `previous` at the instant `at` (a date, date-time or RFC 3339
    /// instant, strictly inside the period): rated as a usage document's `plan_change` is, each
    /// plan for its part of the period.
    pub fn open_containing_changed(
        prepared: &'a PreparedPlan<'a>,
        customer_id: &str,
        setup: &CustomerSetup,
        containing: &str,
        default_timezone: Option<&str>,
        change: Option<(&'a Plan, &str)>,
        plugins: &'a dyn PluginHost,
    ) -> Result<Opened<'a>, RateError> {
        let usage = Usage {
            customer: Customer {
                id: customer_id.to_owned(),
                timezone: setup
                    .timezone
                    .clone()
                    .or_else(|| default_timezone.map(str::to_owned)),
                attributes: setup.attributes.clone(),
            },
            subscription: setup.subscription.clone(),
            period: Some(PeriodSelector::Containing {
                containing: containing.to_owned(),
            }),
            quantities: BTreeMap::new(),
            events: Vec::new(),
            carry_in: setup
                .carry_in
                .iter()
                .map(|(code, level)| (code.clone(), crate::usage::CarryIn::Level(*level)))
                .collect(),
            credits: setup.credits.clone(),
            plan_change: change.map(|(previous, at)| PlanChange {
                at: at.to_owned(),
                previous_plan: Box::new(previous.clone()),
            }),
            split_line: None,
        };
        let plan = prepared.plan();
        let usage = match context(plan, &usage) {
            Err(RateError::Period {
                error: PeriodError::BeforeStart { .. },
                ..
            }) => {
                let first = Usage {
                    period: Some(PeriodSelector::Index { index: 0 }),
                    ..usage
                };
                let ctx = context(plan, &first)?;
                let date =
                    ctx.calendar
                        .parse_instant(containing)
                        .map_err(|error| RateError::Period {
                            path: "$.period.containing".to_owned(),
                            error,
                        })?;
                if date < ctx.period.cycle_start {
                    return Ok(Opened::NotStarted);
                }
                first
            }
            Err(RateError::Period {
                error: PeriodError::AfterEnd { .. },
                ..
            }) => return Ok(Opened::Ended),
            Err(error) => return Err(error),
            Ok(_) => usage,
        };
        PeriodRater::open_usage(
            prepared,
            &usage,
            change.map(|(previous, _)| previous),
            plugins,
        )
        .map(|rater| Opened::Rating(Box::new(rater)))
    }

    fn open_usage(
        prepared: &'a PreparedPlan<'a>,
        usage: &Usage,
        previous_plan: Option<&'a Plan>,
        plugins: &'a dyn PluginHost,
    ) -> Result<PeriodRater<'a>, RateError> {
        let plan = prepared.plan();
        check_usage(plan, usage)?;
        let ctx = context(plan, usage)?;
        let change_at = match &usage.plan_change {
            Some(change) => {
                let at =
                    ctx.calendar
                        .parse_instant(&change.at)
                        .map_err(|error| RateError::Period {
                            path: "$.plan_change.at".to_owned(),
                            error,
                        })?;
                if at <= ctx.period.start || at >= ctx.period.end {
                    return Err(usage_error(
                        "$.plan_change.at",
                        "the plan change must fall strictly inside the rated period",
                    ));
                }
                Some(at)
            }
            None => None,
        };
        let (carry_in, carried_values) = crate::usage::split_carry_in(&usage.carry_in);
        let window = Window {
            start: change_at.unwrap_or(ctx.period.start),
            end: ctx.usage_end(),
        };
        let aggregator = Aggregator::routed(
            &plan.metrics,
            &plan.charges,
            Some(prepared.router()),
            window,
            ctx.billable_from,
            (&carry_in, &carried_values),
            plugins,
        )?;
        let current = Segment::new(aggregator);
        let previous = match (previous_plan, change_at) {
            (Some(old_plan), Some(at)) => {
                // Carry-in levels of metrics the previous plan does not have are not its.
                let carry_in: BTreeMap<String, Decimal> = carry_in
                    .into_iter()
                    .filter(|(code, _)| old_plan.metrics.iter().any(|m| &m.code == code))
                    .collect();
                let carried_values: BTreeMap<String, Vec<String>> = carried_values
                    .into_iter()
                    .filter(|(code, _)| old_plan.metrics.iter().any(|m| &m.code == code))
                    .collect();
                let window = Window {
                    start: ctx.period.start,
                    end: at,
                };
                let aggregator = Aggregator::routed(
                    &old_plan.metrics,
                    &old_plan.charges,
                    None,
                    window,
                    ctx.billable_from,
                    (&carry_in, &carried_values),
                    plugins,
                )?;
                Some(Previous {
                    plan: old_plan,
                    segment: Segment::new(aggregator),
                    at,
                })
            }
            _ => None,
        };
        Ok(PeriodRater {
            prepared,
            plugins,
            ctx,
            customer: usage.customer.clone(),
            credits: usage.credits.clone(),
            quantities: None,
            input_hash: prepared.input_hash(usage),
            current,
            previous,
        })
    }

    /// The customer rated.
    pub fn customer(&self) -> &Customer {
        &self.customer
    }

    /// The period rated.
    pub fn period(&self) -> crate::period::BillingPeriod {
        self.ctx.period
    }

    /// Pushes one event; `place` says where it came from, for the invoice's note if it is
    /// refused (a refused event changes nothing). An event naming another customer is not
    /// counted ([`Outcome::OtherCustomer`]).
    pub fn push(
        &mut self,
        event: &Event<'_>,
        place: fmt::Arguments<'_>,
    ) -> Result<Outcome, EventError> {
        let routing = self.prepared.router().route(event);
        self.push_routed(event, &routing, place)
    }

    /// [`PeriodRater::push`] of an event already routed by the prepared plan's router (e.g.
    /// while it was parsed, on another thread).
    #[inline]
    pub fn push_routed(
        &mut self,
        event: &Event<'_>,
        routing: &Routing,
        place: fmt::Arguments<'_>,
    ) -> Result<Outcome, EventError> {
        if !event.customer.is_empty()
            && !self.customer.id.is_empty()
            && event.customer != self.customer.id
        {
            self.current.not_billed.record(Outcome::OtherCustomer);
            if let Some(previous) = &mut self.previous {
                previous.segment.not_billed.record(Outcome::OtherCustomer);
            }
            return Ok(Outcome::OtherCustomer);
        }
        self.push_own(event, routing, place)
    }

    /// [`PeriodRater::push_routed`] of an event the caller knows is this customer's (it grouped
    /// the events by customer, as `ratecard rate` does): the customer is not compared again.
    #[inline]
    pub fn push_own(
        &mut self,
        event: &Event<'_>,
        routing: &Routing,
        place: fmt::Arguments<'_>,
    ) -> Result<Outcome, EventError> {
        let period = self.ctx.period;
        let result = self.current.aggregator.push_routed(event, routing);
        self.current
            .note(event, &result, place, period, self.ctx.usage_end());
        if let Some(previous) = &mut self.previous {
            let old = previous.segment.aggregator.push(event);
            previous
                .segment
                .note(event, &old, place, period, period.end);
            // The event is the previous plan's when its timestamp is in that plan's window.
            if !matches!(old, Ok(Outcome::OutsideWindow)) && event.timestamp < previous.at {
                return old;
            }
        }
        result
    }

    /// Reads what pushing `event` will need (see [`Aggregator::warm`]).
    #[inline]
    pub fn warm(&self, event: &Event<'_>, routing: &Routing) {
        self.current.aggregator.warm(event, routing);
    }

    /// The period and what was metered, not priced: where [`PreparedPlan::total`]'s fast
    /// path starts. `None` with a plan change (two plans meter the period).
    pub(crate) fn into_metered(self) -> Result<Option<(QuoteContext, MeteredUsage)>, RateError> {
        if self.previous.is_some() {
            return Ok(None);
        }
        let mut metered = self.current.aggregator.finish()?;
        if let Some(quantities) = self.quantities {
            apply_quantities(self.prepared.plan(), quantities, &mut metered)?;
        }
        Ok(Some((self.ctx, metered)))
    }

    /// Prices what was pushed: the invoice.
    pub fn finish(self) -> Result<Invoice, RateError> {
        let plan = self.prepared.plan();
        // Events outside the period are noted once, by the plan in force at its start.
        let from_period_start = self.previous.is_none();
        let mut notes = Vec::new();
        self.current
            .not_billed
            .write_notes(&mut notes, from_period_start);
        let mut metered = self.current.aggregator.finish()?;
        if let Some(quantities) = self.quantities {
            apply_quantities(plan, quantities, &mut metered)?;
        }
        let previous = match self.previous {
            Some(Previous { plan, segment, at }) => {
                segment.not_billed.write_notes(&mut notes, true);
                Some((plan, segment.aggregator.finish()?, at))
            }
            None => None,
        };
        price_usage(
            plan,
            &self.customer,
            &self.credits,
            &self.ctx,
            metered,
            previous,
            notes,
            self.plugins,
            self.input_hash,
        )
    }
    /// The invoice as it stands: what [`PeriodRater::finish`] would give now, the rater going
    /// on (a server's live usage keeps one per customer and pushes each stored event once).
    /// `None` when the plan has a custom (plugin) metric, whose value a plugin gives only at
    /// the end: rate the period's events again instead.
    pub fn snapshot(&self) -> Option<Result<Invoice, RateError>> {
        self.snapshot_scaled(None)
    }

    /// The invoice if the rest of the period goes as it went so far: the quantities of the
    /// additive metrics (`count`, `sum`, not a carried-over sum) of the current plan multiplied by `scale` (the period's
    /// length over the time elapsed; counts rounded to whole events), the others as they stand
    /// (a max, a latest level, a unique count are not extrapolated; a time-weighted level is
    /// already held to the period's end). `None` as for [`PeriodRater::snapshot`].
    pub fn projected(&self, scale: Decimal) -> Option<Result<Invoice, RateError>> {
        self.snapshot_scaled(Some(scale))
    }

    fn snapshot_scaled(&self, scale: Option<Decimal>) -> Option<Result<Invoice, RateError>> {
        let plan = self.prepared.plan();
        let from_period_start = self.previous.is_none();
        let mut notes = Vec::new();
        self.current
            .not_billed
            .clone()
            .write_notes(&mut notes, from_period_start);
        let mut metered = match self.current.aggregator.snapshot()? {
            Ok(metered) => metered,
            Err(error) => return Some(Err(error.into())),
        };
        if let Some(quantities) = self.quantities
            && let Err(error) = apply_quantities(plan, quantities, &mut metered)
        {
            return Some(Err(error));
        }
        if let Some(scale) = scale {
            extrapolate(plan, &mut metered, scale);
        }
        let previous = match &self.previous {
            Some(Previous { plan, segment, at }) => {
                segment.not_billed.clone().write_notes(&mut notes, true);
                match segment.aggregator.snapshot()? {
                    Ok(metered) => Some((*plan, metered, *at)),
                    Err(error) => return Some(Err(error.into())),
                }
            }
            None => None,
        };
        Some(price_usage(
            plan,
            &self.customer,
            &self.credits,
            &self.ctx,
            metered,
            previous,
            notes,
            self.plugins,
            self.input_hash.clone(),
        ))
    }
}

impl<'a> Segment<'a> {
    fn new(aggregator: Aggregator<'a>) -> Segment<'a> {
        Segment {
            aggregator,
            not_billed: NotBilled::default(),
        }
    }

    /// Notes what became of an event. With a plan change each plan's window is only part of
    /// the period: an event in the other part is rated by the other plan, so it is not
    /// "outside the period". An event of the period at or after `usage_end` (a split line's
    /// end) belongs to a later line of the period.
    #[inline]
    fn note(
        &mut self,
        event: &Event<'_>,
        result: &Result<Outcome, EventError>,
        place: fmt::Arguments<'_>,
        period: crate::period::BillingPeriod,
        usage_end: Timestamp,
    ) {
        match result {
            Ok(Outcome::OutsideWindow)
                if event.timestamp >= usage_end && event.timestamp < period.end =>
            {
                self.not_billed.record_after_split_line();
            }
            Ok(Outcome::OutsideWindow)
                if event.timestamp >= period.start && event.timestamp < period.end => {}
            Ok(outcome) => self.not_billed.record(*outcome),
            Err(error) => self.not_billed.reject(place, error),
        }
    }
}

/// Multiplies the quantities of `plan`'s additive metrics by `scale` (see
/// [`PeriodRater::projected`]); a product too large for a decimal keeps the quantity.
fn extrapolate(plan: &Plan, metered: &mut crate::meter::MeteredUsage, scale: Decimal) {
    for metric in &plan.metrics {
        if metric.recurrence == crate::plan::Recurrence::CarriedOver {
            // Most of a carried value came before the period: it is a level, not a rate.
            continue;
        }
        let whole = match metric.aggregation {
            Aggregation::Count => true,
            Aggregation::Sum { .. } => false,
            _ => continue,
        };
        for group in metered.metrics.get_mut(&metric.code).into_iter().flatten() {
            let Some(mut projected) = group.quantity.checked_mul(scale) else {
                continue;
            };
            projected = if whole {
                projected.round()
            } else {
                projected.round_dp(group.quantity.scale().max(6))
            };
            group.raw_value = group
                .raw_value
                .checked_mul(scale)
                .unwrap_or(group.raw_value);
            group.quantity = projected.normalize();
        }
    }
}
