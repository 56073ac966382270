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
    pub(super) route: Option<(usize, usize)>,
    pub(super) id_hash: u32,
}

/// Routes events to metrics by event code; shared by every aggregator of the same metrics (a
/// [`PreparedPlan`](crate::rate::PreparedPlan) holds one).
#[derive(Clone, Debug)]
pub struct Router {
    /// Event code → range of `routes` holding the indexes of the slots selecting it.
    by_code: FxHashMap<Box<str>, (usize, usize)>,
    pub(super) routes: Vec<usize>,
}

impl Router {
    pub fn new(metrics: &[Metric]) -> Router {
        let mut by_event_code: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (idx, metric) in metrics.iter().enumerate() {
            by_event_code
                .entry(metric.event_code())
                .or_default()
                .push(idx);
        }
        let mut by_code = FxHashMap::default();
        let mut routes = Vec::with_capacity(metrics.len());
        for (code, idxs) in by_event_code {
            by_code.insert(code.into(), (routes.len(), routes.len() + idxs.len()));
            routes.extend(idxs);
        }
        Router { by_code, routes }
    }

    pub fn route(&self, event: &Event<'_>) -> Routing {
        Routing {
            route: self.by_code.get(event.code.as_ref()).copied(),
            id_hash: StrIndex::hash(&event.id),
        }
    }
}
