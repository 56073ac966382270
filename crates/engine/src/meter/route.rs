//! Routing: which metrics select an event (by its code), and the hash of its id, computed once
//! per event by a [`Router`] shared by every aggregator of the same metrics.

use std::collections::BTreeMap;

#[cfg(doc)]
use super::Aggregator;
use super::index::{FxHashMap, StrIndex};
use crate::plan::Metric;
use crate::usage::Event;

/// What [`Aggregator::push`] needs to know of an event that depends only on the metrics, not
/// on the customer: which metrics select its code, and the hash of its id. Computing it apart
/// (e.g. while parsing, on another thread) keeps the per-customer work small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    /// Range of [`Router`]'s routes holding the slots selecting the code (`None`: no metric).
    /// 32-bit bounds: a parsed event carries its routing until it is pushed, so a smaller one
    /// is less memory to write and read back per event.
    pub(super) route: Option<RouteRange>,
    pub(super) id_hash: u32,
}

/// Routes events to metrics by event code; shared by every aggregator of the same metrics (a
/// [`PreparedPlan`](crate::rate::PreparedPlan) holds one).
#[derive(Clone, Debug)]
pub struct Router {
    /// Event code → range of `routes` holding the indexes of the slots selecting it.
    by_code: FxHashMap<Box<str>, RouteRange>,
    /// The same, when there are few codes (the usual plan): a scan comparing lengths first
    /// beats hashing the code.
    few: Option<Vec<(Box<str>, RouteRange)>>,
    pub(super) routes: Vec<usize>,
}

/// A range of [`Router`]'s routes.
pub(super) type RouteRange = (u32, u32);

/// Up to this many event codes are looked up by a scan.
const MAX_SCANNED_CODES: usize = 8;

impl Router {
    pub fn new(metrics: &[Metric]) -> Router {
        let mut by_event_code: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (idx, metric) in metrics.iter().enumerate() {
            by_event_code
                .entry(metric.event_code())
                .or_default()
                .push(idx);
        }
        let mut by_code: FxHashMap<Box<str>, RouteRange> = FxHashMap::default();
        let mut routes = Vec::with_capacity(metrics.len());
        // (Saturating: 2^32 metrics would not fit in memory.)
        let bound = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        for (code, idxs) in by_event_code {
            by_code.insert(
                code.into(),
                (bound(routes.len()), bound(routes.len() + idxs.len())),
            );
            routes.extend(idxs);
        }
        let few = (by_code.len() <= MAX_SCANNED_CODES).then(|| {
            let mut few: Vec<(Box<str>, RouteRange)> =
                by_code.iter().map(|(k, v)| (k.clone(), *v)).collect();
            crate::sort::sort_by(&mut few, Ord::cmp);
            few
        });
        Router {
            by_code,
            few,
            routes,
        }
    }

    #[inline]
    pub fn route(&self, event: &Event<'_>) -> Routing {
        let code: &str = event.code.as_ref();
        let route = match &self.few {
            Some(few) => few
                .iter()
                .find(|(known, _)| known.len() == code.len() && known.as_ref() == code)
                .map(|(_, range)| *range),
            None => self.by_code.get(code).copied(),
        };
        Routing {
            route,
            id_hash: StrIndex::hash(&event.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(n: usize) -> Vec<Metric> {
        (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "code": format!("m{i}"), "event": format!("code.{}", i % (n - 1).max(1)),
                    "aggregation": {"type": "count"}}))
                .unwrap()
            })
            .collect()
    }

    /// A plan's few codes are scanned, many are hashed: both route every code the same way.
    #[test]
    fn scanned_and_hashed_codes_route_alike() {
        for n in [1, 3, MAX_SCANNED_CODES, MAX_SCANNED_CODES + 1, 40] {
            let router = Router::new(&metrics(n));
            assert_eq!(
                router.few.is_some(),
                router.by_code.len() <= MAX_SCANNED_CODES
            );
            for code in (0..n)
                .map(|i| format!("code.{i}"))
                .chain(["x".to_owned(), String::new()])
            {
                let line = serde_json::json!({
                    "id": "e", "timestamp": "2026-11-01T00:00:00Z", "code": code})
                .to_string();
                let event: Event<'_> = serde_json::from_str(&line).unwrap();
                let hashed = router.by_code.get(event.code.as_ref()).copied();
                assert_eq!(
                    router.route(&event).route,
                    hashed,
                    "{n} metrics, code {code:?}"
                );
            }
        }
    }
}
