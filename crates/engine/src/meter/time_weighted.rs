//! Time-weighted integrals: `Σ level × duration` over the accruing part of the window.

use rust_decimal::Decimal;

use super::Window;
use crate::plan::{Aggregation, LevelValues, Metric};
use crate::usage::Timestamp;

/// The raw value of a time-weighted metric's group, `None` on overflow.
pub(super) fn time_weighted(
    metric: &Metric,
    carry_in: Decimal,
    levels: &mut [(Timestamp, Decimal)],
    window: Window,
    accrue_from: Timestamp,
) -> Option<Decimal> {
    let (values, per_ms) = match &metric.aggregation {
        Aggregation::TimeWeightedSum { values, per, .. } => {
            (*values, Some(per.seconds().checked_mul(1000)?))
        }
        Aggregation::TimeWeightedAverage { values, .. } => (*values, None),
        _ => return None,
    };
    // Stable: events at one instant apply in push order.
    crate::sort::sort_by(levels, |a, b| a.0.cmp(&b.0));
    let mut integral = Decimal::ZERO;
    let mut level = carry_in;
    let mut cursor = window.start;
    let mut accrue = |level: Decimal, from: Timestamp, to: Timestamp| -> Option<()> {
        let from = from.max(accrue_from);
        if to > from {
            let duration = Decimal::from(to.0.checked_sub(from.0)?);
            integral = integral.checked_add(level.checked_mul(duration)?)?;
        }
        Some(())
    };
    for &(at, value) in levels.iter() {
        accrue(level, cursor, at)?;
        cursor = at;
        level = match values {
            LevelValues::Absolute => value,
            LevelValues::Increment => level.checked_add(value)?,
        };
    }
    accrue(level, cursor, window.end)?;
    let divisor = match per_ms {
        Some(per_ms) => per_ms,
        // An empty window (a zero-length period) holds nothing: its average is 0.
        None if window.end == window.start => return Some(Decimal::ZERO),
        None => window.end.0.checked_sub(window.start.0)?,
    };
    integral.checked_div(Decimal::from(divisor))
}
