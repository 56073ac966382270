//! The Ratecard server's core: plans and their versions, customers, event ingest, invoice
//! previews and period close, over a [`Store`]. It rates with the engine's [`PeriodRater`],
//! exactly as `ratecard rate` does (the same events in the same order give the same invoice,
//! byte for byte), and knows nothing of HTTP.
//!
//! Time comes from one injectable [`Clock`], so tests walk a month in a second.
//!
//! Prepared plans live for the life of the process (plan versions are immutable and few): a
//! `PeriodRater` borrows its plan, and a server rates with any version at any time.

pub mod api;
pub mod demo;
mod html;
mod live;
mod openapi;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use ratecard_engine::invoice::Invoice;
use ratecard_engine::period::Calendar;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{PreparedPlan, RateError};
use ratecard_engine::rater::{Opened, PeriodRater};
use ratecard_engine::usage::{CustomerSetup, Event};

pub use live::{LiveLine, LiveUsage};
use store::{NewEvent, StoredCustomer, StoredInvoice};
pub use store::{Store, StoreError};

/// Where the server reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock tests set and advance.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn at(millis: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(millis))
    }

    pub fn set(&self, millis: i64) {
        self.0.store(millis, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How long after a period ends its late events are still accepted (and it cannot be closed
/// before). Default: 3 days.
pub const DEFAULT_GRACE_MS: i64 = 3 * 24 * 3600 * 1000;

/// A customer as the server knows them: the engine's setup and the plan version they are on.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct CustomerRecord {
    #[serde(default)]
    pub id: String,
    #[serde(flatten)]
    pub setup: CustomerSetup,
    /// `{"id": "api-pro", "version": 2}`: the plan version the subscription is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRef>,
}

#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct PlanRef {
    pub id: String,
    pub version: i64,
}

/// Why the server refused something, named so an API can answer with a status and a path.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan, customer or event is invalid.
    #[error(transparent)]
    Rate(#[from] RateError),
    #[error("{what} `{id}` does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
}

/// What became of one event of a batch (by its index in the batch).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EventOutcome {
    /// Stored: counted once.
    Stored { index: usize, id: String },
    /// Already stored (a retry): acknowledged, still counted once.
    Duplicate { index: usize, id: String },
    /// Refused, with the reason; the batch's other events are unaffected.
    Rejected {
        index: usize,
        id: Option<String>,
        error: String,
    },
}

impl EventOutcome {
    pub fn is_accepted(&self) -> bool {
        !matches!(self, EventOutcome::Rejected { .. })
    }
}

/// The server's core (see the module docs).
pub struct Server {
    store: Store,
    clock: Box<dyn Clock>,
    plugins: &'static dyn PluginHost,
    grace_ms: i64,
    /// Every plan version, prepared: `(id, version)` → plan.
    plans: Mutex<BTreeMap<(String, i64), &'static PreparedPlan<'static>>>,
    live: live::Live,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store)
            .field("clock", &self.clock)
            .field("grace_ms", &self.grace_ms)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the store in `data_dir` (created if missing) and prepares its plans.
    pub async fn open(
        data_dir: &Path,
        clock: Box<dyn Clock>,
        plugins: &'static dyn PluginHost,
    ) -> Result<Server, ServerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ServerError::Invalid(format!("{}: {e}", data_dir.display())))?;
        let store = Store::open(data_dir).await?;
        let mut plans = BTreeMap::new();
        for (id, version, body) in store.plan_versions().await? {
            let plan: Plan = serde_json::from_str(&body)
                .map_err(|e| ServerError::Invalid(format!("stored plan {id} v{version}: {e}")))?;
            plans.insert((id, version), prepare(plan)?);
        }
        Ok(Server {
            store,
            clock,
            plugins,
            grace_ms: DEFAULT_GRACE_MS,
            plans: Mutex::new(plans),
            live: live::Live::new(),
        })
    }

    pub fn with_grace_ms(mut self, grace_ms: i64) -> Server {
        self.grace_ms = grace_ms;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Makes a new operator key (32 random bytes from the OS, hex), keeps its hash and returns
    /// it: the only time the key itself is seen.
    pub async fn create_key(&self, label: &str) -> Result<String, ServerError> {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom")
                .map_err(|e| ServerError::Invalid(format!("reading /dev/urandom: {e}")))?,
            &mut bytes,
        )
        .map_err(|e| ServerError::Invalid(format!("reading /dev/urandom: {e}")))?;
        let key = format!("rk_{}", hex::encode(bytes));
        self.add_key(&key, label).await?;
        Ok(key)
    }

    /// Accepts `key` as an operator key from now on (only its hash is kept).
    pub async fn add_key(&self, key: &str, label: &str) -> Result<(), ServerError> {
        self.store
            .add_key_hash(&api::key_hash(key), label, self.now())
            .await?;
        Ok(())
    }

    /// Adds a plan: version 1 of a new id, or the next version of an existing one. The plan is
    /// validated first (every error with its path); nothing is stored if it is invalid.
    pub async fn add_plan(&self, plan: Plan) -> Result<PlanRef, ServerError> {
        let body = serde_json::to_string(&plan).map_err(|e| ServerError::Invalid(e.to_string()))?;
        let id = plan.id.clone();
        let prepared = prepare(plan)?;
        let version = self.store.add_plan_version(&id, &body, self.now()).await?;
        self.plans_lock().insert((id.clone(), version), prepared);
        Ok(PlanRef { id, version })
    }

    /// Every plan version, by id then version.
    pub fn plans(&self) -> Vec<(PlanRef, Plan)> {
        self.plans_lock()
            .iter()
            .map(|((id, version), prepared)| {
                (
                    PlanRef {
                        id: id.clone(),
                        version: *version,
                    },
                    prepared.plan().clone(),
                )
            })
            .collect()
    }

    fn plans_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, i64), &'static PreparedPlan<'static>>> {
        self.plans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn plan(&self, plan: &PlanRef) -> Result<&'static PreparedPlan<'static>, ServerError> {
        self.plans_lock()
            .get(&(plan.id.clone(), plan.version))
            .copied()
            .ok_or_else(|| ServerError::NotFound {
                what: "plan version",
                id: format!("{}@{}", plan.id, plan.version),
            })
    }

    /// Creates or replaces a customer. Their plan version must exist and their timezone and
    /// subscription must give a calendar.
    pub async fn put_customer(&self, customer: CustomerRecord) -> Result<(), ServerError> {
        if customer.id.trim().is_empty() {
            return Err(ServerError::Invalid(
                "$.id: a customer needs an id".to_owned(),
            ));
        }
        if let Some(plan) = &customer.plan {
            let prepared = self.plan(plan)?;
            calendar(prepared.plan(), &customer.setup)?;
        }
        let setup = serde_json::to_string(&customer.setup)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        let stored = StoredCustomer {
            id: customer.id.clone(),
            setup,
            plan: customer.plan.map(|p| (p.id, p.version)),
        };
        self.store.put_customer(&stored, self.now()).await?;
        self.live.forget(&customer.id);
        self.live.changed(&customer.id);
        Ok(())
    }

    pub async fn customer(&self, id: &str) -> Result<CustomerRecord, ServerError> {
        let stored = self
            .store
            .customer(id)
            .await?
            .ok_or_else(|| ServerError::NotFound {
                what: "customer",
                id: id.to_owned(),
            })?;
        record_of(stored)
    }

    /// Ingests a batch (JSON values, one per event). Good events are stored and committed
    /// before this returns, bad ones come back with their index, id and reason; a duplicate
    /// (already stored: a client retrying) is acknowledged and counted once.
    pub async fn ingest(
        &self,
        batch: Vec<serde_json::Value>,
    ) -> Result<Vec<EventOutcome>, ServerError> {
        let now = self.now();
        let mut outcomes: Vec<Option<EventOutcome>> = vec![None; batch.len()];
        let mut to_store = Vec::new();
        let mut customers: BTreeMap<String, Option<Calendar>> = BTreeMap::new();
        for (index, value) in batch.into_iter().enumerate() {
            let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
            let reject = |error: String| EventOutcome::Rejected {
                index,
                id: id.clone(),
                error,
            };
            let text = value.to_string();
            let event = match Event::from_json_line(text.as_bytes()) {
                Ok(event) => event.into_owned(),
                Err(error) => {
                    outcomes[index] = Some(reject(format!("not a valid event: {error}")));
                    continue;
                }
            };
            if event.customer.is_empty() {
                outcomes[index] =
                    Some(reject("$.customer: an event needs its customer".to_owned()));
                continue;
            }
            let customer = event.customer.to_string();
            if !customers.contains_key(&customer) {
                let calendar = match self.store.customer(&customer).await? {
                    Some(stored) => {
                        let record = record_of(stored)?;
                        match &record.plan {
                            Some(plan) => Some(calendar(self.plan(plan)?.plan(), &record.setup)?),
                            None => None,
                        }
                    }
                    None => None,
                };
                customers.insert(customer.clone(), calendar);
            }
            let Some(Some(calendar)) = customers.get(&customer) else {
                outcomes[index] = Some(reject(format!(
                    "$.customer: no subscribed customer `{customer}` (create it and its subscription first)"
                )));
                continue;
            };
            let period = match calendar.period_containing(event.timestamp) {
                Ok(period) => period,
                Err(error) => {
                    outcomes[index] = Some(reject(format!("$.timestamp: {error}")));
                    continue;
                }
            };
            if now > period.end.0.saturating_add(self.grace_ms) {
                outcomes[index] = Some(reject(format!(
                    "$.timestamp: too late: its period ended at {} and late events are accepted for {} hours after",
                    calendar.format(period.end),
                    self.grace_ms / 3_600_000
                )));
                continue;
            }
            let body =
                serde_json::to_string(&event).map_err(|e| ServerError::Invalid(e.to_string()))?;
            to_store.push((
                index,
                NewEvent {
                    customer_id: customer,
                    event_id: event.id.to_string(),
                    ts: event.timestamp.0,
                    body,
                },
                period.start.0,
            ));
        }
        let rows: Vec<(NewEvent, i64)> = to_store
            .iter()
            .map(|(_, event, start)| (event.clone(), *start))
            .collect();
        let stored = self.store.insert_events(&rows, now).await?;
        // Committed: announce each customer with a new event once.
        let mut changed: Vec<&str> = rows
            .iter()
            .zip(&stored)
            .filter(|(_, outcome)| matches!(outcome, Ok(true)))
            .map(|((event, _), _)| event.customer_id.as_str())
            .collect();
        changed.sort_unstable();
        changed.dedup();
        for customer in changed {
            self.live.changed(customer);
        }
        for ((index, event, _), outcome) in to_store.into_iter().zip(stored) {
            outcomes[index] = Some(match outcome {
                Ok(true) => EventOutcome::Stored {
                    index,
                    id: event.event_id,
                },
                Ok(false) => EventOutcome::Duplicate {
                    index,
                    id: event.event_id,
                },
                Err(_) => EventOutcome::Rejected {
                    index,
                    id: Some(event.event_id),
                    error: "$.timestamp: its period is already invoiced (closed)".to_owned(),
                },
            });
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// The invoice of `customer`'s period containing `date` (a local date, `2026-11-15`) from
    /// the events stored so far: a preview, nothing is stored.
    pub async fn preview(
        &self,
        customer: &str,
        date: &str,
    ) -> Result<Option<Invoice>, ServerError> {
        let record = self.customer(customer).await?;
        let Some(plan) = &record.plan else {
            return Ok(None);
        };
        let Some(rater) = self.open_period(plan, &record, date)? else {
            return Ok(None);
        };
        let period = rater.period();
        let events = self
            .store
            .events_in(customer, period.start.0, period.end.0)
            .await?;
        rate(rater, &events).map(Some)
    }

    /// The rater of the customer's period containing `date`, or `None` when their subscription
    /// starts after it.
    fn open_period(
        &self,
        plan: &PlanRef,
        record: &CustomerRecord,
        date: &str,
    ) -> Result<Option<Box<PeriodRater<'static>>>, ServerError> {
        let opened = PeriodRater::open_containing(
            self.plan(plan)?,
            &record.id,
            &record.setup,
            date,
            None,
            self.plugins,
        )?;
        Ok(match opened {
            Opened::Rating(rater) => Some(rater),
            Opened::NotStarted => None,
        })
    }

    /// Closes the period containing `date` for every subscribed customer: finalizes their
    /// invoices (numbered in customer order, without gaps). Safe to re-run and to run again
    /// after a crash half-way: an invoice already final is kept as it is, a missing one is made.
    /// A period is closed only once its grace window is over.
    pub async fn close(&self, date: &str) -> Result<Vec<StoredInvoice>, ServerError> {
        let now = self.now();
        let mut closed = Vec::new();
        for stored in self.store.customers().await? {
            let record = record_of(stored)?;
            let Some(plan) = record.plan.clone() else {
                continue;
            };
            let Some(rater) = self.open_period(&plan, &record, date)? else {
                continue;
            };
            let (start, end) = (rater.period().start.0, rater.period().end.0);
            if now <= end.saturating_add(self.grace_ms) {
                return Err(ServerError::Invalid(format!(
                    "the period of customer `{}` containing {date} is still open to late events until {} hours after its end",
                    record.id,
                    self.grace_ms / 3_600_000
                )));
            }
            let finalized = self
                .store
                .finalize_invoice(
                    &record.id,
                    (start, end),
                    (&plan.id, plan.version),
                    now,
                    |events| {
                        let invoice = rate(rater, &events).map_err(|e| e.to_string())?;
                        let body = serde_json::to_string(&invoice).map_err(|e| e.to_string())?;
                        Ok((body, invoice.total.0.to_string()))
                    },
                )
                .await?
                .map_err(|reason| {
                    ServerError::Invalid(format!("customer `{}`: {reason}", record.id))
                })?;
            closed.push(finalized);
        }
        Ok(closed)
    }
}

/// Validates and prepares a plan, kept for the life of the process (see the module docs).
fn prepare(plan: Plan) -> Result<&'static PreparedPlan<'static>, ServerError> {
    Ok(Box::leak(Box::new(PreparedPlan::new(plan)?)))
}

fn record_of(stored: StoredCustomer) -> Result<CustomerRecord, ServerError> {
    let setup: CustomerSetup = serde_json::from_str(&stored.setup)
        .map_err(|e| ServerError::Invalid(format!("stored customer {}: {e}", stored.id)))?;
    Ok(CustomerRecord {
        id: stored.id,
        setup,
        plan: stored.plan.map(|(id, version)| PlanRef { id, version }),
    })
}

/// The customer's billing calendar under `plan`.
fn calendar(plan: &Plan, setup: &CustomerSetup) -> Result<Calendar, ServerError> {
    let subscription = setup.subscription.as_ref().ok_or_else(|| {
        ServerError::Invalid(
            "$.subscription: a subscribed customer needs a subscription start".to_owned(),
        )
    })?;
    Calendar::new(
        setup.timezone.as_deref().unwrap_or("UTC"),
        plan.interval,
        &subscription.start,
        subscription.billing_anchor.as_deref(),
    )
    .map_err(|error| ServerError::Invalid(format!("$.subscription: {error}")))
}

/// The invoice of a period from its `events` (JSON lines, in order of arrival), as `ratecard
/// rate` computes it.
fn rate(mut rater: Box<PeriodRater<'static>>, events: &[String]) -> Result<Invoice, ServerError> {
    for (idx, line) in events.iter().enumerate() {
        let event = Event::from_json_line(line.as_bytes())
            .map_err(|e| ServerError::Invalid(format!("stored event {idx}: {e}")))?;
        // A refused event is noted on the invoice, as `ratecard rate` notes it.
        let _outcome = rater.push(&event, format_args!("event {}", event.id));
    }
    Ok(rater.finish()?)
}
