//! Estimation helpers for pricing pages and sales: the bill at a usage, a cost curve, the
//! break-even usage between two plans, the cheapest plan for a usage profile, and the largest
//! usage that fits a budget.
//!
//! Every helper rates a *typical full period*: the subscription's first period, starting on
//! [`DEFAULT_ANCHOR`](crate::rate::DEFAULT_ANCHOR) in UTC, so flat fees are not prorated. Costs
//! compare invoice totals (after discounts, taxes and credits).
//!
//! Break-even and budget searches are exact where the cost is linear: they evaluate every tier
//! boundary of the plans, find the segment where the answer lies, and solve the line there; where
//! a segment is not linear (packages, stairsteps) they bisect to [`SEARCH_PRECISION`].

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decimal::{Amount, Dec};
use crate::plan::{Plan, PriceModel};
use crate::plugin::PluginHost;
use crate::rate::{DEFAULT_ANCHOR, PreparedPlan, RateError};
use crate::usage::{Customer, QuantityInput, Subscription, Usage};

/// Bisection stops when the interval is this narrow.
pub const SEARCH_PRECISION: Decimal = Decimal::from_parts(1, 0, 0, false, 6);

/// The largest quantity searched when no upper bound is given.
pub const MAX_SEARCH_QUANTITY: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0); // 10^15

/// Usage for one typical period with these quantities (metric code → quantity).
pub fn typical_usage(quantities: &BTreeMap<String, Decimal>) -> Usage {
    Usage {
        customer: Customer::default(),
        subscription: Some(Subscription {
            start: DEFAULT_ANCHOR.to_owned(),
            billing_anchor: None,
            end: None,
        }),
        period: None,
        quantities: crate::sort::map_of(
            quantities
                .iter()
                .map(|(k, v)| (k.clone(), QuantityInput::Total(Dec(*v)))),
        ),
        events: Vec::new(),
        carry_in: BTreeMap::new(),
        credits: Vec::new(),
        plan_change: None,
        split_line: None,
    }
}

/// The invoice total of a typical period at these quantities.
pub fn total_at(
    plan: &Plan,
    quantities: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Decimal, RateError> {
    prepared_total(&PreparedPlan::of(plan)?, quantities, plugins)
}

/// [`total_at`] of a prepared plan: what the searches and curves call, many times per plan.
pub fn prepared_total(
    plan: &PreparedPlan<'_>,
    quantities: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Decimal, RateError> {
    plan.total(quantities, plugins)
}

/// One point of a cost curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub quantity: Dec,
    pub total: Amount,
}

/// Why an estimate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// Rating failed at some usage.
    #[error(transparent)]
    Rate(#[from] RateError),
    /// The metric is not in the plan.
    #[error("no metric `{metric}` in plan `{plan}`")]
    UnknownMetric { plan: String, metric: String },
    /// The metric groups usage: estimates vary a single ungrouped quantity.
    #[error("metric `{0}` groups usage by dimensions: estimates need an ungrouped metric")]
    GroupedMetric(String),
    /// The range is empty or negative.
    #[error("bad range: {0}")]
    BadRange(String),
}

fn check_metric(plan: &Plan, metric: &str) -> Result<(), EstimateError> {
    let found = plan
        .metrics
        .iter()
        .find(|m| m.code == metric)
        .ok_or_else(|| EstimateError::UnknownMetric {
            plan: plan.id.clone(),
            metric: metric.to_owned(),
        })?;
    if !found.group_by.is_empty() {
        return Err(EstimateError::GroupedMetric(metric.to_owned()));
    }
    Ok(())
}

/// The boundaries of every tier, band, package and allowance on `metric`, shifted by the
/// charge's allowance: where a cost curve may bend or jump.
pub fn breakpoints(plan: &Plan, metric: &str) -> Vec<Decimal> {
    let mut points = Vec::new();
    for charge in plan
        .charges
        .iter()
        .filter(|c| c.metric.as_deref() == Some(metric))
    {
        let offset = charge.included.map_or(Decimal::ZERO, Decimal::from);
        points.push(offset);
        let bounds: Vec<Decimal> = match &charge.model {
            PriceModel::Graduated { tiers }
            | PriceModel::Volume { tiers }
            | PriceModel::Percentage { tiers, .. } => tiers
                .iter()
                .filter_map(|t| t.up_to.map(Decimal::from))
                .collect(),
            PriceModel::Stairstep { steps } => steps
                .iter()
                .filter_map(|s| s.up_to.map(Decimal::from))
                .collect(),
            PriceModel::Package { free_units, .. } => {
                free_units.iter().map(|d| d.0).collect::<Vec<Decimal>>()
            }
            _ => Vec::new(),
        };
        points.extend(bounds.into_iter().filter_map(|b| b.checked_add(offset)));
    }
    crate::sort::sort_by(&mut points, Decimal::cmp);
    points.dedup();
    points
}

/// Samples of the total against one metric's quantity, at points a person reads: `from`, the
/// multiples of a round step (1, 2, 2.5 or 5 × 10^k, the smallest giving at most `n_samples`
/// points) up to `to`, `to`, and every breakpoint in the range with the quantity one unit above it
/// (so a jump shows on both sides). The unit is the finest decimal place of the range, the step
/// and the breakpoint: 1 for whole quantities, 0.1 for a boundary at 0.5 GB.
pub fn cost_curve(
    plan: &Plan,
    metric: &str,
    from: Decimal,
    to: Decimal,
    n_samples: u32,
    base: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Vec<CurvePoint>, EstimateError> {
    check_metric(plan, metric)?;
    if from < Decimal::ZERO || to <= from {
        return Err(EstimateError::BadRange(format!(
            "from {from} to {to}: need 0 <= from < to"
        )));
    }
    let n_samples = n_samples.clamp(2, 10_000);
    let step = round_step((to - from) / Decimal::from(n_samples - 1));
    let mut quantities = vec![from, to];
    let mut k = (from / step).ceil();
    while let Some(point) = step.checked_mul(k).filter(|p| *p < to) {
        quantities.push(point);
        k += Decimal::ONE;
    }
    let scale = |d: Decimal| d.normalize().scale();
    let range_scale = scale(from).max(scale(to)).max(scale(step));
    for point in breakpoints(plan, metric) {
        if point > from && point < to {
            quantities.push(point);
            let unit = Decimal::new(1, range_scale.max(scale(point)));
            if let Some(above) = point.checked_add(unit).filter(|a| *a < to) {
                quantities.push(above);
            }
        }
    }
    quantities.iter_mut().for_each(|q| *q = q.normalize());
    crate::sort::sort_by(&mut quantities, Decimal::cmp);
    quantities.dedup();
    let prepared = PreparedPlan::of(plan)?;
    let mut usage = base.clone();
    quantities
        .into_iter()
        .map(|quantity| {
            usage.insert(metric.to_owned(), quantity);
            let total = prepared_total(&prepared, &usage, plugins)?;
            Ok(CurvePoint {
                quantity: Dec(quantity),
                total: Amount(total),
            })
        })
        .collect()
}

/// The smallest of 1, 2, 2.5 and 5 × 10^k that is at least `raw` (> 0): a step a person reads.
fn round_step(raw: Decimal) -> Decimal {
    let ten = Decimal::TEN;
    let mut power = Decimal::ONE;
    while power > raw && power.scale() < 20 {
        power /= ten;
    }
    while let Some(next) = power.checked_mul(ten).filter(|next| *next <= raw) {
        power = next;
    }
    [
        Decimal::ONE,
        Decimal::TWO,
        Decimal::new(25, 1),
        Decimal::new(5, 0),
        ten,
    ]
    .into_iter()
    .filter_map(|m| power.checked_mul(m))
    .find(|step| *step >= raw)
    .unwrap_or(raw)
    .normalize()
}

/// Where two plans cost the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakEven {
    /// The usage at which the cheaper plan changes (within [`SEARCH_PRECISION`]).
    pub quantity: Dec,
    pub cheaper_below: String,
    pub cheaper_above: String,
}

/// The first usage in `[from, to]` at which the cheaper of two plans changes, if any.
#[allow(clippy::too_many_arguments)]
pub fn break_even(
    plan_a: &Plan,
    plan_b: &Plan,
    metric: &str,
    from: Decimal,
    to: Decimal,
    base: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Option<BreakEven>, EstimateError> {
    check_metric(plan_a, metric)?;
    check_metric(plan_b, metric)?;
    if from < Decimal::ZERO || to <= from {
        return Err(EstimateError::BadRange(format!(
            "from {from} to {to}: need 0 <= from < to"
        )));
    }
    let (prepared_a, prepared_b) = (PreparedPlan::of(plan_a)?, PreparedPlan::of(plan_b)?);
    let mut usage = base.clone();
    let mut diff = |q: Decimal| -> Result<Decimal, EstimateError> {
        usage.insert(metric.to_owned(), q);
        Ok(prepared_total(&prepared_a, &usage, plugins)?
            - prepared_total(&prepared_b, &usage, plugins)?)
    };
    let mut points: Vec<Decimal> = breakpoints(plan_a, metric)
        .into_iter()
        .chain(breakpoints(plan_b, metric))
        .filter(|p| *p > from && *p < to)
        .collect();
    points.push(from);
    points.push(to);
    crate::sort::sort_by(&mut points, Decimal::cmp);
    points.dedup();
    let sign = |d: Decimal| d.cmp(&Decimal::ZERO);
    let mut previous = (points[0], diff(points[0])?);
    for &q in &points[1..] {
        let d = diff(q)?;
        if sign(d) != sign(previous.1)
            && !(previous.1.is_zero() && d.is_zero())
            && !previous.1.is_zero()
        {
            let crossing = solve(previous, (q, d), &mut diff)?;
            let (below, above) = if previous.1 < Decimal::ZERO {
                (plan_a, plan_b)
            } else {
                (plan_b, plan_a)
            };
            return Ok(Some(BreakEven {
                quantity: Dec(crossing.normalize()),
                cheaper_below: below.id.clone(),
                cheaper_above: above.id.clone(),
            }));
        }
        previous = (q, d);
    }
    Ok(None)
}

/// The zero of `f` between `a` and `b` (whose values differ in sign): exact when `f` is linear
/// there, by bisection otherwise.
fn solve(
    a: (Decimal, Decimal),
    b: (Decimal, Decimal),
    f: &mut impl FnMut(Decimal) -> Result<Decimal, EstimateError>,
) -> Result<Decimal, EstimateError> {
    let (mut lo, mut f_lo) = a;
    let (mut hi, mut f_hi) = b;
    loop {
        let slope_run = hi - lo;
        let linear_guess = lo + (-f_lo) * slope_run / (f_hi - f_lo);
        let f_guess = f(linear_guess)?;
        if f_guess.is_zero() {
            return Ok(linear_guess);
        }
        if hi - lo <= SEARCH_PRECISION {
            return Ok(hi);
        }
        // Not linear here: bisect.
        let mid = (lo + hi) / Decimal::TWO;
        let f_mid = f(mid)?;
        if f_mid.is_zero() {
            return Ok(mid);
        }
        if (f_mid < Decimal::ZERO) == (f_lo < Decimal::ZERO) {
            lo = mid;
            f_lo = f_mid;
        } else {
            hi = mid;
            f_hi = f_mid;
        }
    }
}

/// Plans ranked by their total for one usage profile, cheapest first (ties by plan id).
pub fn cheapest_plan<'p>(
    plans: &'p [Plan],
    quantities: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Vec<(&'p Plan, Decimal)>, EstimateError> {
    let mut ranked = Vec::with_capacity(plans.len());
    for plan in plans {
        // A plan without some of the profile's metrics just does not charge them.
        let relevant: BTreeMap<String, Decimal> = crate::sort::map_of(
            quantities
                .iter()
                .filter(|(code, _)| plan.metrics.iter().any(|m| &m.code == *code))
                .map(|(k, v)| (k.clone(), *v)),
        );
        ranked.push((plan, total_at(plan, &relevant, plugins)?));
    }
    crate::sort::sort_by(&mut ranked, |a, b| {
        a.1.cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id))
    });
    Ok(ranked)
}

/// The largest quantity of `metric` whose total stays within `budget` (searching up to `max`,
/// default [`MAX_SEARCH_QUANTITY`]). `Ok(None)`: even zero usage exceeds the budget.
pub fn max_usage_within_budget(
    plan: &Plan,
    metric: &str,
    budget: Decimal,
    max: Option<Decimal>,
    base: &BTreeMap<String, Decimal>,
    plugins: &dyn PluginHost,
) -> Result<Option<Decimal>, EstimateError> {
    check_metric(plan, metric)?;
    let max = max.unwrap_or(MAX_SEARCH_QUANTITY);
    let prepared = PreparedPlan::of(plan)?;
    let mut usage = base.clone();
    let mut over = |q: Decimal| -> Result<Decimal, EstimateError> {
        usage.insert(metric.to_owned(), q);
        Ok(prepared_total(&prepared, &usage, plugins)? - budget)
    };
    if over(Decimal::ZERO)? > Decimal::ZERO {
        return Ok(None);
    }
    if over(max)? <= Decimal::ZERO {
        return Ok(Some(max));
    }
    let mut points: Vec<Decimal> = breakpoints(plan, metric)
        .into_iter()
        .filter(|p| *p > Decimal::ZERO && *p < max)
        .collect();
    points.push(Decimal::ZERO);
    points.push(max);
    crate::sort::sort_by(&mut points, Decimal::cmp);
    points.dedup();
    // Scan from the top: the last segment that starts within budget holds the answer (a volume
    // cliff can make a later segment affordable again). A segment starts just above its lower
    // breakpoint, where the next tier applies.
    let values: Vec<Decimal> = points.iter().map(|q| over(*q)).collect::<Result<_, _>>()?;
    for idx in (0..points.len() - 1).rev() {
        let lo = if idx == 0 {
            points[0]
        } else {
            points[idx] + SEARCH_PRECISION
        };
        let (hi, f_hi) = (points[idx + 1], values[idx + 1]);
        if lo >= hi {
            continue;
        }
        let f_lo = if idx == 0 { values[0] } else { over(lo)? };
        if f_lo > Decimal::ZERO {
            continue;
        }
        if f_hi <= Decimal::ZERO {
            return Ok(Some(hi));
        }
        // Largest q in [lo, hi) with over(q) <= 0.
        let (mut good, mut bad) = (lo, hi);
        let slope = (f_hi - f_lo) / (hi - lo);
        if !slope.is_zero() {
            let guess = lo + (-f_lo) / slope;
            if guess > lo && guess < hi && over(guess)? <= Decimal::ZERO {
                good = guess;
                if over(guess + SEARCH_PRECISION)? > Decimal::ZERO {
                    return Ok(Some(guess.normalize()));
                }
            }
        }
        while bad - good > SEARCH_PRECISION {
            let mid = (good + bad) / Decimal::TWO;
            if over(mid)? <= Decimal::ZERO {
                good = mid;
            } else {
                bad = mid;
            }
        }
        return Ok(Some(
            good.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::ToZero)
                .normalize(),
        ));
    }
    Ok(Some(Decimal::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::NoPlugins;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn plan(id: &str, charges: &str) -> Plan {
        serde_json::from_str(&format!(
            r#"{{"id":"{id}","currency":"USD","metrics":[{{"code":"calls","aggregation":{{"type":"count"}}}}],"charges":{charges}}}"#
        ))
        .unwrap()
    }

    fn none() -> BTreeMap<String, Decimal> {
        BTreeMap::new()
    }

    #[test]
    fn break_even_is_exact_on_linear_segments() {
        let a = plan(
            "a",
            r#"[{"id":"f","model":{"type":"flat","amount":"10"}},{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"0.01"}}]"#,
        );
        let b = plan(
            "b",
            r#"[{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"0.02"}}]"#,
        );
        let found = break_even(&a, &b, "calls", d("0"), d("100000"), &none(), &NoPlugins)
            .unwrap()
            .unwrap();
        assert_eq!(found.quantity.0, d("1000"));
        assert_eq!(
            (found.cheaper_below.as_str(), found.cheaper_above.as_str()),
            ("b", "a")
        );
        assert!(
            break_even(&a, &b, "calls", d("0"), d("500"), &none(), &NoPlugins)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn cost_curve_samples_every_tier_boundary_and_just_above() {
        let p = plan(
            "v",
            r#"[{"id":"v","metric":"calls","model":{"type":"volume","tiers":[{"up_to":"100","unit_price":"1"},{"up_to":null,"unit_price":"0.5"}]}}]"#,
        );
        let curve = cost_curve(&p, "calls", d("0"), d("1000"), 3, &none(), &NoPlugins).unwrap();
        let at = |q: &str| {
            curve
                .iter()
                .find(|pt| pt.quantity.0 == d(q))
                .map(|pt| pt.total.0)
        };
        assert_eq!(at("100"), Some(d("100.00")));
        assert_eq!(at("101"), Some(d("50.50"))); // the cliff is visible, one call above
        assert_eq!(at("1000"), Some(d("500.00")));
        assert!(curve.windows(2).all(|w| w[0].quantity < w[1].quantity));
    }

    /// Points a person reads: round steps, each boundary and one unit above it, no
    /// `102040.81632653061224489795918` or `100000.000001`.
    #[test]
    fn cost_curve_points_are_round_and_boundaries_exact() {
        let p = plan(
            "g",
            r#"[{"id":"g","metric":"calls","model":{"type":"graduated","tiers":[{"up_to":"100000","unit_price":"0.001"},{"up_to":"1100000","unit_price":"0.0005"},{"up_to":null,"unit_price":"0.0001"}]}}]"#,
        );
        let quantities = |from: &str, to: &str, n: u32| -> Vec<String> {
            cost_curve(&p, "calls", d(from), d(to), n, &none(), &NoPlugins)
                .unwrap()
                .iter()
                .map(|pt| pt.quantity.0.to_string())
                .collect()
        };
        assert_eq!(
            quantities("0", "5000000", 5),
            [
                "0", "100000", "100001", "1100000", "1100001", "2000000", "4000000", "5000000"
            ]
        );
        // 50 samples over 5 M: a step of 102,040.8… becomes 200,000.
        let curve = quantities("0", "5000000", 50);
        assert!(curve.len() <= 50 + 5, "{curve:?}");
        assert!(curve.contains(&"200000".to_owned()), "{curve:?}");
        assert!(curve.iter().all(|q| !q.contains('.')), "{curve:?}");
        // Fractional ranges keep the precision they need, and no more.
        assert_eq!(quantities("0", "1", 5), ["0", "0.25", "0.5", "0.75", "1"]);
        assert_eq!(quantities("0.5", "2", 4), ["0.5", "1", "1.5", "2"]);
        for (raw, step) in [
            ("102040.8163", "200000"),
            ("0.3", "0.5"),
            ("1", "1"),
            ("2.4", "2.5"),
            ("7", "10"),
        ] {
            assert_eq!(round_step(d(raw)).to_string(), step, "{raw}");
        }
    }

    #[test]
    fn cheapest_plan_ranks_by_total() {
        let a = plan(
            "a",
            r#"[{"id":"f","model":{"type":"flat","amount":"10"}},{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"0.01"}}]"#,
        );
        let b = plan(
            "b",
            r#"[{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"0.02"}}]"#,
        );
        let plans = [a, b];
        let usage: BTreeMap<String, Decimal> = [("calls".to_owned(), d("5000"))].into();
        let ranked = cheapest_plan(&plans, &usage, &NoPlugins).unwrap();
        let ids: Vec<(&str, Decimal)> = ranked.iter().map(|(p, t)| (p.id.as_str(), *t)).collect();
        assert_eq!(ids, vec![("a", d("60.00")), ("b", d("100.00"))]);
    }

    #[test]
    fn budget_finds_the_largest_affordable_usage_past_a_volume_cliff() {
        let p = plan(
            "v",
            r#"[{"id":"v","metric":"calls","model":{"type":"volume","tiers":[{"up_to":"100","unit_price":"1"},{"up_to":null,"unit_price":"0.5"}]}}]"#,
        );
        // 90 fits at tier 1 (90.00); past the cliff, 0.5 × q ≤ 90 → q ≤ 180, and the line rounds
        // to cents, so up to 180.0099999… still bills 90.00.
        assert_eq!(
            max_usage_within_budget(&p, "calls", d("90"), None, &none(), &NoPlugins).unwrap(),
            Some(d("180.009999"))
        );
        let flat = plan(
            "f",
            r#"[{"id":"f","model":{"type":"flat","amount":"10"}},{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"1"}}]"#,
        );
        assert_eq!(
            max_usage_within_budget(&flat, "calls", d("5"), None, &none(), &NoPlugins).unwrap(),
            None
        );
    }

    #[test]
    fn estimates_refuse_unknown_and_grouped_metrics() {
        let p = plan(
            "a",
            r#"[{"id":"u","metric":"calls","model":{"type":"per_unit","unit_price":"1"}}]"#,
        );
        let err = cost_curve(&p, "nope", d("0"), d("10"), 5, &none(), &NoPlugins).unwrap_err();
        assert_eq!(err.to_string(), "no metric `nope` in plan `a`");
        let err = cost_curve(&p, "calls", d("10"), d("0"), 5, &none(), &NoPlugins).unwrap_err();
        assert!(err.to_string().starts_with("bad range"), "{err}");
    }
}
