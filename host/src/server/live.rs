//! Live usage: per customer, the current period's invoice so far and the projected bill, kept
//! incrementally. Each customer has one [`PeriodRater`] fed once with every event stored since
//! it last looked (by sequence number, see [`Store::events_after`]); a call reads only the new
//! events, never the period again. A customer's state is dropped when their plan or setup
//! changes, and a new one opened when the period turns.
//!
//! Changes are announced on a broadcast channel (the customer's id) after each ingest commits,
//! which the API's server-sent-events stream listens to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ratecard_engine::invoice::Invoice;
use ratecard_engine::rater::PeriodRater;
use ratecard_engine::usage::{CustomerSetup, Event, Timestamp};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::broadcast;

use super::store::StoredChange;
use super::{CustomerRecord, PlanRef, Server, ServerError};

/// One customer's live state.
struct State {
    plan: PlanRef,
    setup: CustomerSetup,
    rater: Box<PeriodRater<'static>>,
    /// The last event's sequence number pushed into `rater`.
    applied_seq: i64,
    /// Stored events pushed.
    n_events: u64,
}

/// The sequence number a live rater has seen up to, and its period's `[start, end)`.
type Seen = (i64, (i64, i64));

/// What [`Server::apply`] found.
enum Applied {
    Usage(Box<LiveUsage>),
    Forgotten,
    /// The plan has a plugin metric: rate the period's events afresh (the one case that
    /// rescans).
    NeedsRescan,
}

/// Every customer's live state and the change announcements.
pub(super) struct Live {
    states: Mutex<HashMap<String, State>>,
    changes: broadcast::Sender<Arc<str>>,
}

impl Live {
    pub(super) fn new() -> Live {
        Live {
            states: Mutex::new(HashMap::new()),
            changes: broadcast::channel(4096).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces that `customer`'s usage changed.
    pub(super) fn changed(&self, customer: &str) {
        // No receiver is not an error: nobody is watching.
        let _receivers = self.changes.send(Arc::from(customer));
    }

    /// Forgets every customer's state (a plugin version changed).
    #[cfg_attr(not(feature = "plugins"), allow(dead_code))]
    pub(super) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Forgets `customer`'s state (their plan or setup changed).
    pub(super) fn forget(&self, customer: &str) {
        self.lock().remove(customer);
    }
}

/// A customer's current period as it stands: what `GET /v1/customers/{id}/usage` answers.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct LiveUsage {
    pub customer_id: String,
    /// The instant the figures are for (RFC 3339, UTC).
    pub as_of: String,
    pub currency: String,
    pub period: ratecard_engine::invoice::PeriodInfo,
    /// The part of the period gone by, from 0 to 1 (6 decimal places).
    pub elapsed: String,
    /// The invoice of the events so far (the total is what the period would bill now).
    pub amount_so_far: String,
    /// The total if the rest of the period goes as it went so far (additive metrics scaled by
    /// the period's length over the time elapsed); `null` for a plan with a plugin metric,
    /// whose value a plugin gives only at the period's end.
    pub projected_total: Option<String>,
    /// Per invoice line: quantity and amount so far, and projected.
    pub lines: Vec<LiveLine>,
    /// The events counted so far (each stored event once).
    pub events: u64,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct LiveLine {
    pub charge_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub group: std::collections::BTreeMap<String, String>,
    pub quantity: String,
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_quantity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_amount: Option<String>,
}

impl Server {
    /// A receiver of the ids of customers whose usage changed (after each ingest commits).
    pub fn usage_changes(&self) -> broadcast::Receiver<Arc<str>> {
        self.live.changes.subscribe()
    }

    /// `customer`'s current period (the one holding now) as it stands, with the projected bill;
    /// `None` when they have no subscription or it has not started.
    pub async fn live_usage(&self, customer: &str) -> Result<Option<LiveUsage>, ServerError> {
        loop {
            let known = self.known_customer(customer).await?;
            let (record, changes) = (&known.record, &known.changes);
            let Some(plan) = record.plan.clone() else {
                return Ok(None);
            };
            let now = self.now();
            let Some((after_seq, window)) = self.live_state(record, &plan, changes, now)? else {
                return Ok(None);
            };
            let new_events = self.store.events_after(customer, after_seq, window).await?;
            match self.apply(customer, &new_events, now)? {
                Applied::Usage(usage) => return Ok(Some(*usage)),
                // Forgotten meanwhile (the customer changed): start afresh.
                Applied::Forgotten => {}
                Applied::NeedsRescan => {
                    return self.live_usage_by_rescan(record, changes, now).await;
                }
            }
        }
    }

    /// Pushes the new events into the customer's live rater and reads it.
    fn apply(
        &self,
        customer: &str,
        new_events: &[(i64, String)],
        now: i64,
    ) -> Result<Applied, ServerError> {
        let mut states = self.live.lock();
        let Some(state) = states.get_mut(customer) else {
            return Ok(Applied::Forgotten);
        };
        for (seq, body) in new_events {
            // A concurrent call may have pushed some of them already.
            if *seq <= state.applied_seq {
                continue;
            }
            let event = Event::from_json_line(body.as_bytes())
                .map_err(|e| ServerError::Invalid(format!("stored event {seq}: {e}")))?;
            let _outcome = state.rater.push(&event, format_args!("event {}", event.id));
            state.applied_seq = *seq;
            state.n_events += 1;
        }
        let period = state.rater.period();
        let elapsed = elapsed_fraction(period.start.0, period.end.0, now);
        let Some(so_far) = state.rater.snapshot() else {
            // A plugin metric: its plugin gives a value once, at the end.
            return Ok(Applied::NeedsRescan);
        };
        let so_far = so_far?;
        let projected = match scale_of(elapsed) {
            Some(scale) => state.rater.projected(scale).transpose()?,
            None => None,
        };
        Ok(Applied::Usage(Box::new(live_usage(
            customer,
            now,
            elapsed,
            (&so_far, state.n_events),
            projected.as_ref(),
        ))))
    }

    /// The live rater of the customer's current period, opened if needed: the sequence number
    /// it has seen up to and the period's `[start, end)`; `None` when not started.
    fn live_state(
        &self,
        record: &CustomerRecord,
        plan: &PlanRef,
        changes: &[StoredChange],
        now: i64,
    ) -> Result<Option<Seen>, ServerError> {
        let mut states = self.live.lock();
        if let Some(state) = states.get(&record.id) {
            let period = state.rater.period();
            if &state.plan == plan
                && state.setup == record.setup
                && (period.start.0..period.end.0).contains(&now)
            {
                return Ok(Some((state.applied_seq, (period.start.0, period.end.0))));
            }
        }
        let containing = Timestamp(now).to_rfc3339();
        let Some((_rated_by, rater)) = self.open_period(record, changes, &containing)? else {
            states.remove(&record.id);
            return Ok(None);
        };
        let period = rater.period();
        states.insert(
            record.id.clone(),
            State {
                plan: plan.clone(),
                setup: record.setup.clone(),
                rater,
                applied_seq: 0,
                n_events: 0,
            },
        );
        Ok(Some((0, (period.start.0, period.end.0))))
    }

    async fn live_usage_by_rescan(
        &self,
        record: &CustomerRecord,
        changes: &[StoredChange],
        now: i64,
    ) -> Result<Option<LiveUsage>, ServerError> {
        let containing = Timestamp(now).to_rfc3339();
        let Some((_rated_by, rater)) = self.open_period(record, changes, &containing)? else {
            return Ok(None);
        };
        let period = rater.period();
        let events = self
            .store
            .events_in(&record.id, period.start.0, period.end.0)
            .await?;
        let n_events = events.len() as u64;
        let invoice = super::rate(rater, &events)?;
        let elapsed = elapsed_fraction(period.start.0, period.end.0, now);
        Ok(Some(live_usage(
            &record.id,
            now,
            elapsed,
            (&invoice, n_events),
            None,
        )))
    }
}

/// The part of `[start, end)` before `now`, in [0, 1].
pub(super) fn elapsed_fraction(start: i64, end: i64, now: i64) -> Decimal {
    let length = end.saturating_sub(start).max(1);
    let gone = now.saturating_sub(start).clamp(0, length);
    Decimal::from(gone) / Decimal::from(length)
}

/// Period length over time elapsed; none in the period's first minute-ish share (nothing to
/// extrapolate from yet).
pub(super) fn scale_of(elapsed: Decimal) -> Option<Decimal> {
    if elapsed <= Decimal::new(1, 5) {
        return None;
    }
    Decimal::ONE.checked_div(elapsed)
}

fn live_usage(
    customer: &str,
    now: i64,
    elapsed: Decimal,
    (so_far, n_events): (&Invoice, u64),
    projected: Option<&Invoice>,
) -> LiveUsage {
    let lines = so_far
        .lines
        .iter()
        .map(|line| {
            let twin = projected.and_then(|p| {
                p.lines.iter().find(|l| {
                    l.charge_id == line.charge_id
                        && l.origin == line.origin
                        && l.group == line.group
                })
            });
            LiveLine {
                charge_id: line.charge_id.clone(),
                metric: line.metric.clone(),
                group: line.group.clone(),
                quantity: line.quantity.to_string(),
                amount: line.amount.0.to_string(),
                projected_quantity: twin.map(|l| l.quantity.to_string()),
                projected_amount: twin.map(|l| l.amount.0.to_string()),
            }
        })
        .collect();
    LiveUsage {
        customer_id: customer.to_owned(),
        as_of: Timestamp(now).to_rfc3339(),
        currency: so_far.currency.clone(),
        period: so_far.period.clone(),
        elapsed: elapsed.round_dp(6).to_string(),
        amount_so_far: so_far.total.0.to_string(),
        projected_total: projected.map(|p| p.total.0.to_string()),
        lines,
        events: n_events,
    }
}
