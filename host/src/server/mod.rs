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
pub mod collect;
pub mod demo;
mod html;
mod live;
mod openapi;
#[cfg(feature = "plugins")]
pub mod plugins;
pub mod portal;
pub mod reports;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ratecard_engine::invoice::Invoice;
use ratecard_engine::period::Calendar;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::PluginHost;
use ratecard_engine::rate::{PreparedPlan, RateError};
use ratecard_engine::rater::{Opened, PeriodRater};
use ratecard_engine::usage::{CustomerSetup, Event, Timestamp};

pub use live::{LiveLine, LiveUsage};
use store::{Announced, ChangeKind, NewEvent, StoredChange, StoredCustomer, StoredInvoice};
pub use store::{Database, Store, StoreError};

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

/// A clock shared with whoever sets it (a test keeps the `Arc` and advances it).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> i64 {
        (**self).now()
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

/// A customer's subscription as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Subscription {
    pub customer_id: String,
    /// The plan version they are on now.
    pub plan: Option<PlanRef>,
    pub timezone: String,
    pub start: Option<String>,
    /// Moves between plan versions, in order (instants in the customer's timezone).
    pub changes: Vec<PlanMove>,
    /// When a cancellation takes effect: no period from then on is billed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_from: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct PlanMove {
    pub at: String,
    pub from: PlanRef,
    pub to: PlanRef,
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
    /// The state of what the request is about forbids it (an invoice already paid, a
    /// reference already used for another payment).
    #[error("{0}")]
    Conflict(String),
    /// The payment provider declined the charge or did not answer in time: nothing was
    /// recorded paid.
    #[error("{message}")]
    Payment { timed_out: bool, message: String },
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
    /// Customers and their subscription changes as last read, so ingest and live usage do not
    /// read them per request; dropped on every change. (One process owns the store; replicas
    /// sharing a database would need the change announced to them.)
    known: Mutex<KnownCustomers>,
    /// Where uploaded plugins go (`with_plugins`); `None`: uploads are refused.
    #[cfg(feature = "plugins")]
    plugin_admin: Option<&'static plugins::ServerPlugins>,
    /// Where `POST /v1/invoices/{n}/collect` charges (`with_provider`).
    provider: Option<Arc<dyn collect::PaymentProvider>>,
    provider_timeout: std::time::Duration,
    /// Held by closes (which spend account credit) and refunds (which take it back), so a
    /// credit is never spent twice (with the store's collect lock, across replicas too).
    collect_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KnownCustomers {
    /// Bumped on every change: a read begun before it does not fill the cache.
    generation: u64,
    customers: std::collections::HashMap<String, Arc<Known>>,
}

/// A customer and their subscription changes.
#[derive(Debug)]
struct Known {
    record: CustomerRecord,
    changes: Vec<StoredChange>,
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
    /// Opens the SQLite store in `data_dir` (created if missing) and prepares its plans.
    pub async fn open(
        data_dir: &Path,
        clock: Box<dyn Clock>,
        plugins: &'static dyn PluginHost,
    ) -> Result<Server, ServerError> {
        Server::open_database(&Database::Sqlite(data_dir.to_path_buf()), clock, plugins).await
    }

    /// Opens the store in `database` (a SQLite data directory is created if missing) and
    /// prepares its plans. On PostgreSQL, run [`Server::follow_replicas`] beside it so that
    /// changes other replicas make reach this one's caches.
    pub async fn open_database(
        database: &Database,
        clock: Box<dyn Clock>,
        plugins: &'static dyn PluginHost,
    ) -> Result<Server, ServerError> {
        if let Database::Sqlite(data_dir) = database {
            std::fs::create_dir_all(data_dir)
                .map_err(|e| ServerError::Invalid(format!("{}: {e}", data_dir.display())))?;
        }
        let store = Store::open(database).await?;
        let mut plans = BTreeMap::new();
        for (id, version, body) in store.plan_versions().await? {
            let plan: Plan = serde_json::from_str(&body)
                .map_err(|e| ServerError::Invalid(format!("stored plan {id} v{version}: {e}")))?;
            plans.insert((id, version), prepare(plan)?);
        }
        let server = Server {
            store,
            clock,
            plugins,
            grace_ms: DEFAULT_GRACE_MS,
            plans: Mutex::new(plans),
            live: live::Live::new(),
            known: Mutex::new(KnownCustomers::default()),
            #[cfg(feature = "plugins")]
            plugin_admin: None,
            provider: None,
            provider_timeout: collect::DEFAULT_PROVIDER_TIMEOUT,
            collect_lock: tokio::sync::Mutex::new(()),
        };
        // Invoices a close stored but did not open for collection (a crash in between).
        server.open_collections().await?;
        Ok(server)
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

    /// Makes sure plan version `plan` is prepared: one another replica sharing the database
    /// added is read from the store the first time it is needed (an unknown one stays unknown:
    /// [`Server::plan`] names it).
    async fn ensure_plan(&self, plan: &PlanRef) -> Result<(), ServerError> {
        let key = (plan.id.clone(), plan.version);
        if self.plans_lock().contains_key(&key) {
            return Ok(());
        }
        let Some(body) = self.store.plan_version(&plan.id, plan.version).await? else {
            return Ok(());
        };
        let parsed: Plan = serde_json::from_str(&body).map_err(|e| {
            ServerError::Invalid(format!("stored plan {} v{}: {e}", plan.id, plan.version))
        })?;
        let prepared = prepare(parsed)?;
        self.plans_lock().entry(key).or_insert(prepared);
        Ok(())
    }

    /// [`Server::ensure_plan`] for every plan version a customer's record and changes name.
    async fn ensure_plans_of(
        &self,
        record: &CustomerRecord,
        changes: &[StoredChange],
    ) -> Result<(), ServerError> {
        if let Some(plan) = &record.plan {
            self.ensure_plan(plan).await?;
        }
        for change in changes {
            if let ChangeKind::Plan { from, to } = &change.kind {
                self.ensure_plan(&plan_ref(from)).await?;
                self.ensure_plan(&plan_ref(to)).await?;
            }
        }
        Ok(())
    }

    /// Follows what other replicas sharing the database announce (PostgreSQL): drops the
    /// cached customers they changed, prepares the plan versions they added and wakes the
    /// live-usage streams of customers they stored events for. Returns at once on SQLite (one
    /// process owns the database); on PostgreSQL it runs until the store fails or closes.
    pub async fn follow_replicas(&self) -> Result<(), ServerError> {
        let Some(mut listener) = self.store.listen().await? else {
            return Ok(());
        };
        loop {
            match listener.next().await? {
                Announced::Customer(id) => {
                    self.forget_customer(&id);
                    self.live.forget(&id);
                    self.live.changed(&id);
                }
                Announced::Plan(id) => {
                    for (plan_id, version, _) in self.store.plan_versions().await? {
                        if plan_id == id {
                            self.ensure_plan(&PlanRef {
                                id: plan_id,
                                version,
                            })
                            .await?;
                        }
                    }
                }
                Announced::Events(customers) => {
                    for customer in customers {
                        self.live.changed(&customer);
                    }
                }
                Announced::Lost => {
                    // Announcements made while the connection was down are gone: anything
                    // cached may be stale.
                    {
                        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
                        known.generation += 1;
                        known.customers.clear();
                    }
                    self.live.forget_all();
                    for (id, version, _) in self.store.plan_versions().await? {
                        self.ensure_plan(&PlanRef { id, version }).await?;
                    }
                }
            }
        }
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
            self.ensure_plan(plan).await?;
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
        self.forget_customer(&customer.id);
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

    /// The customer and their subscription changes, from the cache or the store; `None` for
    /// an unknown customer.
    async fn known(&self, id: &str) -> Result<Option<Arc<Known>>, ServerError> {
        let generation = {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = known.customers.get(id) {
                return Ok(Some(found.clone()));
            }
            known.generation
        };
        let Some(stored) = self.store.customer(id).await? else {
            return Ok(None);
        };
        let found = Arc::new(Known {
            record: record_of(stored)?,
            changes: self.store.changes(id).await?,
        });
        self.ensure_plans_of(&found.record, &found.changes).await?;
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.generation == generation {
            known.customers.insert(id.to_owned(), found.clone());
        }
        Ok(Some(found))
    }

    /// [`Server::known`] of a customer who must exist.
    async fn known_customer(&self, id: &str) -> Result<Arc<Known>, ServerError> {
        self.known(id).await?.ok_or_else(|| ServerError::NotFound {
            what: "customer",
            id: id.to_owned(),
        })
    }

    /// Drops `id` from the cache of customers (they changed).
    fn forget_customer(&self, id: &str) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.generation += 1;
        known.customers.remove(id);
    }

    /// Moves `customer` to plan version `to` at `at` (a local date or date-time in their
    /// timezone, or an RFC 3339 instant). The period holding `at` is rated by each plan for its
    /// part, as the engine prorates a `plan_change`; later periods by `to`; earlier ones stay
    /// on the plan they had. Refused: a customer without a subscription, a plan of another
    /// billing interval, a move before an earlier change, a second move in one period, a
    /// period already invoiced, a cancelled subscription.
    pub async fn change_plan(
        &self,
        customer: &str,
        to: PlanRef,
        at: &str,
    ) -> Result<Subscription, ServerError> {
        let record = self.customer(customer).await?;
        let Some(from) = record.plan.clone() else {
            return Err(ServerError::Invalid(format!(
                "customer `{customer}` has no plan to change from (give them one with PUT /v1/customers/{customer})"
            )));
        };
        self.ensure_plan(&from).await?;
        self.ensure_plan(&to).await?;
        let (old, new) = (self.plan(&from)?.plan(), self.plan(&to)?.plan());
        if old.interval != new.interval {
            return Err(ServerError::Invalid(format!(
                "$.plan: `{}@{}` bills every {:?}, `{}@{}` every {:?}: a move keeps the billing interval",
                from.id, from.version, old.interval, to.id, to.version, new.interval
            )));
        }
        if from == to {
            return Err(ServerError::Invalid(format!(
                "$.plan: customer `{customer}` is already on `{}@{}`",
                to.id, to.version
            )));
        }
        let calendar = calendar(old, &record.setup)?;
        let instant = calendar
            .parse_instant(at)
            .map_err(|e| ServerError::Invalid(format!("$.at: {e}")))?;
        let period = calendar
            .period_containing(instant)
            .map_err(|e| ServerError::Invalid(format!("$.at: {e}")))?;
        let changes = self.store.changes(customer).await?;
        if cancelled_at(&changes).is_some() {
            return Err(ServerError::Invalid(format!(
                "customer `{customer}`'s subscription is cancelled"
            )));
        }
        if let Some(last) = changes.last()
            && last.at > instant.0
        {
            return Err(ServerError::Invalid(format!(
                "$.at: a change at {} is already recorded; changes go forward in time",
                calendar.format(Timestamp(last.at))
            )));
        }
        if changes.iter().any(|c| {
            matches!(c.kind, ChangeKind::Plan { .. })
                && period.start.0 < c.at
                && c.at < period.end.0
        }) && period.start.0 < instant.0
        {
            return Err(ServerError::Invalid(format!(
                "$.at: the period from {} already has a plan change; one move per period",
                calendar.format(period.start)
            )));
        }
        let change = StoredChange {
            kind: ChangeKind::Plan {
                from: (from.id.clone(), from.version),
                to: (to.id.clone(), to.version),
            },
            at: instant.0,
        };
        self.record_change(customer, &change, period.start.0, &calendar)
            .await?;
        self.subscription(customer).await
    }

    /// Cancels `customer`'s subscription at the end of their current period (the period
    /// holding now is billed whole; no later period is, and no event from its end on is
    /// accepted).
    /// Cancels `customer`'s subscription `at` the end of their current period (`None`), or at
    /// an instant (`"now"`, a local date or date-time, an RFC 3339 instant): the period holding
    /// it ends there and is billed for its part (flat fees that prorate are prorated, usage up
    /// to it counts); events from then on are refused. A retry answers the same; a second
    /// cancellation at another time is refused.
    pub async fn cancel(
        &self,
        customer: &str,
        at: Option<&str>,
    ) -> Result<Subscription, ServerError> {
        let record = self.customer(customer).await?;
        let Some(plan) = record.plan.clone() else {
            return Err(ServerError::Invalid(format!(
                "customer `{customer}` has no subscription to cancel"
            )));
        };
        let changes = self.store.changes(customer).await?;
        self.ensure_plan(&plan).await?;
        let calendar = calendar(self.plan(&plan)?.plan(), &record.setup)?;
        let now = Timestamp(self.now());
        let end = match at {
            None => {
                match calendar.period_containing(now) {
                    Ok(period) => period,
                    Err(_) => calendar
                        .period_containing(calendar.start())
                        .map_err(|e| ServerError::Invalid(format!("$.subscription: {e}")))?,
                }
                .end
            }
            // The whole second: the instant the subscription shows is the one it ends at.
            Some("now") => Timestamp(now.0 - now.0.rem_euclid(1000)).max(calendar.start()),
            Some(text) => calendar
                .parse_instant(text)
                .map_err(|e| ServerError::Invalid(format!("$.at: {e}")))?,
        };
        if let Some(cancelled) = cancelled_at(&changes) {
            // Already cancelled: the same answer for a retry (the same time, or no time
            // asked for), a refusal for another time.
            if at.is_none() || at == Some("now") || cancelled == end.0 {
                return self.subscription(customer).await;
            }
            return Err(ServerError::Invalid(format!(
                "$.at: customer `{customer}`'s subscription is already cancelled from {}",
                calendar.format(Timestamp(cancelled))
            )));
        }
        if end <= calendar.start() {
            return Err(ServerError::Invalid(format!(
                "$.at: {} is not after the subscription's start {}",
                calendar.format(end),
                calendar.format(calendar.start())
            )));
        }
        if let Some(last) = changes.last()
            && last.at >= end.0
        {
            return Err(ServerError::Invalid(format!(
                "$.at: a plan change at {} is already recorded; a cancellation comes after it",
                calendar.format(Timestamp(last.at))
            )));
        }
        let change = StoredChange {
            kind: ChangeKind::Cancel,
            at: end.0,
        };
        // Checked against the period that ends then: it must not be invoiced yet.
        let last = calendar
            .period_containing(Timestamp(end.0 - 1))
            .map_err(|e| ServerError::Invalid(format!("$.subscription: {e}")))?;
        self.record_change(customer, &change, last.start.0, &calendar)
            .await?;
        self.subscription(customer).await
    }

    async fn record_change(
        &self,
        customer: &str,
        change: &StoredChange,
        period_start: i64,
        calendar: &Calendar,
    ) -> Result<(), ServerError> {
        if !self
            .store
            .add_change(customer, change, period_start, self.now())
            .await?
        {
            return Err(ServerError::Invalid(format!(
                "$.at: the period from {} is already invoiced (closed)",
                calendar.format(Timestamp(period_start))
            )));
        }
        self.forget_customer(customer);
        self.live.forget(customer);
        self.live.changed(customer);
        Ok(())
    }

    /// `customer`'s subscription: the plan they are on and its changes.
    pub async fn subscription(&self, customer: &str) -> Result<Subscription, ServerError> {
        let record = self.customer(customer).await?;
        let changes = self.store.changes(customer).await?;
        self.ensure_plans_of(&record, &changes).await?;
        let timezone = record.setup.timezone.as_deref().unwrap_or("UTC");
        let calendar = match &record.plan {
            Some(plan) => Some(calendar(self.plan(plan)?.plan(), &record.setup)?),
            None => None,
        };
        let show = |at: i64| match &calendar {
            Some(calendar) => calendar.format(Timestamp(at)),
            None => Timestamp(at).to_rfc3339(),
        };
        Ok(Subscription {
            customer_id: record.id.clone(),
            plan: record.plan.clone(),
            timezone: timezone.to_owned(),
            start: record.setup.subscription.as_ref().map(|s| s.start.clone()),
            cancelled_from: cancelled_at(&changes).map(show),
            changes: changes
                .iter()
                .filter_map(|c| match &c.kind {
                    ChangeKind::Plan { from, to } => Some(PlanMove {
                        at: show(c.at),
                        from: plan_ref(from),
                        to: plan_ref(to),
                    }),
                    ChangeKind::Cancel => None,
                })
                .collect(),
        })
    }

    /// Ingests a batch (JSON values, one per event). Good events are stored and committed
    /// before this returns, bad ones come back with their index, id and reason; a duplicate
    /// (already stored: a client retrying) is acknowledged and counted once.
    pub async fn ingest(
        &self,
        batch: Vec<serde_json::Value>,
    ) -> Result<Vec<EventOutcome>, ServerError> {
        let texts: Vec<String> = batch.iter().map(serde_json::Value::to_string).collect();
        self.ingest_texts(&texts).await
    }

    /// [`Server::ingest`] of events given as their JSON texts (one event each, as read from
    /// the request: no tree is built for a good event).
    pub async fn ingest_texts<T: AsRef<str>>(
        &self,
        batch: &[T],
    ) -> Result<Vec<EventOutcome>, ServerError> {
        let now = self.now();
        let mut outcomes: Vec<Option<EventOutcome>> = vec![None; batch.len()];
        // The batch index of each row to store.
        let mut to_store: Vec<usize> = Vec::new();
        let mut rows: Vec<(NewEvent, i64)> = Vec::new();
        // Per customer of the batch: their calendar and when their cancellation takes effect.
        let mut customers: BTreeMap<String, Option<(Calendar, Option<i64>)>> = BTreeMap::new();
        for (index, text) in batch.iter().enumerate() {
            let text = text.as_ref();
            let event = match Event::from_json_line(text.as_bytes()) {
                Ok(event) => event,
                Err(error) => {
                    // Its id, if it has one as a string, names it.
                    let id = serde_json::from_str::<serde_json::Value>(text)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|v| v.as_str()).map(str::to_owned));
                    outcomes[index] = Some(EventOutcome::Rejected {
                        index,
                        id,
                        error: format!("not a valid event: {error}"),
                    });
                    continue;
                }
            };
            let reject = |error: String| EventOutcome::Rejected {
                index,
                id: Some(event.id.to_string()),
                error,
            };
            if event.customer.is_empty() {
                outcomes[index] =
                    Some(reject("$.customer: an event needs its customer".to_owned()));
                continue;
            }
            let customer = event.customer.to_string();
            if !customers.contains_key(&customer) {
                let calendar = match self.known(&customer).await? {
                    Some(known) => match &known.record.plan {
                        Some(plan) => Some((
                            calendar(self.plan(plan)?.plan(), &known.record.setup)?,
                            cancelled_at(&known.changes),
                        )),
                        None => None,
                    },
                    None => None,
                };
                customers.insert(customer.clone(), calendar);
            }
            let Some(Some((calendar, cancelled))) = customers.get(&customer) else {
                outcomes[index] = Some(reject(format!(
                    "$.customer: no subscribed customer `{customer}` (create it and its subscription first)"
                )));
                continue;
            };
            if let Some(at) = cancelled
                && event.timestamp.0 >= *at
            {
                outcomes[index] = Some(reject(format!(
                    "$.timestamp: the subscription of `{customer}` was cancelled from {} on",
                    calendar.format(Timestamp(*at))
                )));
                continue;
            }
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
            to_store.push(index);
            rows.push((
                NewEvent {
                    customer_id: customer,
                    event_id: event.id.to_string(),
                    ts: event.timestamp.0,
                    body,
                },
                period.start.0,
            ));
        }
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
        for customer in &changed {
            self.live.changed(customer);
        }
        if !changed.is_empty() {
            // Other replicas' live-usage streams (PostgreSQL): only a wake-up, so a failure
            // to announce loses nothing stored.
            let customers = changed.iter().map(|c| (*c).to_owned()).collect();
            if let Err(error) = self.store.announce_events(customers).await {
                tracing::warn!(%error, "announcing stored events to other replicas");
            }
        }
        for ((index, (event, _)), outcome) in to_store.into_iter().zip(rows).zip(stored) {
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
        let known = self.known_customer(customer).await?;
        let Some((_plan, rater)) = self.open_period(&known.record, &known.changes, date)? else {
            return Ok(None);
        };
        let period = rater.period();
        let events = self
            .store
            .events_in(customer, period.start.0, period.end.0)
            .await?;
        rate(rater, &events).map(Some)
    }

    /// The rater of the customer's period containing `date` and the plan version it is rated
    /// by (their plan then: the subscription's changes say which; a move inside the period
    /// rates each plan for its part), or `None` when their subscription starts after it or
    /// was cancelled before it.
    fn open_period(
        &self,
        record: &CustomerRecord,
        changes: &[StoredChange],
        date: &str,
    ) -> Result<Option<(PlanRef, Box<PeriodRater<'static>>)>, ServerError> {
        let Some(current) = &record.plan else {
            return Ok(None);
        };
        // A cancellation is the subscription's end: the period holding it ends there.
        let ended;
        let setup = match (cancelled_at(changes), &record.setup.subscription) {
            (Some(at), Some(subscription)) => {
                let mut setup = record.setup.clone();
                setup.subscription = Some(ratecard_engine::usage::Subscription {
                    end: Some(Timestamp(at).to_rfc3339()),
                    ..subscription.clone()
                });
                ended = setup;
                &ended
            }
            _ => &record.setup,
        };
        let open = |plan: &PlanRef, change: Option<(&'static Plan, &str)>| {
            let opened = PeriodRater::open_containing_changed(
                self.plan(plan)?,
                &record.id,
                setup,
                date,
                None,
                change,
                self.plugins,
            )?;
            Ok::<_, ServerError>(match opened {
                Opened::Rating(rater) => Some(rater),
                Opened::NotStarted | Opened::Ended => None,
            })
        };
        let Some(rater) = open(current, None)? else {
            return Ok(None);
        };
        if changes.is_empty() {
            return Ok(Some((current.clone(), rater)));
        }
        let (start, end) = (rater.period().start.0, rater.period().end.0);
        if changes
            .iter()
            .any(|c| c.kind == ChangeKind::Cancel && c.at <= start)
        {
            return Ok(None);
        }
        let in_force = plan_at(current, changes, end - 1);
        let inside = changes.iter().find_map(|c| match &c.kind {
            ChangeKind::Plan { from, .. } if start < c.at && c.at < end => {
                Some((plan_ref(from), Timestamp(c.at).to_rfc3339()))
            }
            _ => None,
        });
        if &in_force == current && inside.is_none() {
            return Ok(Some((in_force, rater)));
        }
        let previous = match &inside {
            Some((from, at)) => Some((self.plan(from)?.plan(), at.as_str())),
            None => None,
        };
        Ok(open(&in_force, previous)?.map(|rater| (in_force, rater)))
    }

    /// Closes the period containing `date` for every subscribed customer: finalizes their
    /// invoices (numbered in customer order, without gaps). Safe to re-run and to run again
    /// after a crash half-way: an invoice already final is kept as it is, a missing one is made.
    /// A period is closed only once its grace window is over. Each new invoice is then open
    /// for collection (`server::collect`), due after its plan's net terms; a customer's
    /// account credit is applied by the engine as the credit `account_credit`.
    pub async fn close(&self, date: &str) -> Result<Vec<StoredInvoice>, ServerError> {
        // Closes spend account credit: one at a time, and not during a refund.
        let _collect = self.collect_lock.lock().await;
        // And across replicas sharing a PostgreSQL database.
        let _replicas = self.store.collect_lock().await?;
        self.open_collections().await?;
        let closed = self.close_each(date).await;
        // Each new invoice opens for collection, also when a later customer failed.
        self.open_collections().await?;
        closed
    }

    async fn close_each(&self, date: &str) -> Result<Vec<StoredInvoice>, ServerError> {
        let now = self.now();
        let mut closed = Vec::new();
        for stored in self.store.customers().await? {
            let mut record = record_of(stored)?;
            let changes = self.store.changes(&record.id).await?;
            self.ensure_plans_of(&record, &changes).await?;
            let Some((plan, rater)) = self.open_period(&record, &changes, date)? else {
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
            // The customer's account credit (overpayments, credit notes beyond a balance) is
            // one more of the engine's customer credits: the invoice shows it applied.
            let currency = self.plan(&plan)?.plan().currency.clone();
            let credit = self.account_credit(&record.id, &currency).await?;
            let rater = if credit > rust_decimal::Decimal::ZERO {
                record.setup.credits.push(ratecard_engine::plan::Credit {
                    id: collect::ACCOUNT_CREDIT_ID.to_owned(),
                    description: "Account credit".to_owned(),
                    amount: ratecard_engine::decimal::Dec(credit),
                });
                match self.open_period(&record, &changes, date)? {
                    Some((_, rater)) => rater,
                    None => continue,
                }
            } else {
                rater
            };
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

fn plan_ref((id, version): &(String, i64)) -> PlanRef {
    PlanRef {
        id: id.clone(),
        version: *version,
    }
}

/// The plan version in force at `instant`: the one moved to by the last move at or before it,
/// else the one the first move left, else `current`.
fn plan_at(current: &PlanRef, changes: &[StoredChange], instant: i64) -> PlanRef {
    let mut moves = changes.iter().filter_map(|c| match &c.kind {
        ChangeKind::Plan { from, to } => Some((c.at, from, to)),
        ChangeKind::Cancel => None,
    });
    let Some((first_at, first_from, first_to)) = moves.next() else {
        return current.clone();
    };
    if instant < first_at {
        return plan_ref(first_from);
    }
    let mut plan = first_to;
    for (at, _, to) in moves {
        if at <= instant {
            plan = to;
        }
    }
    plan_ref(plan)
}

/// The instant a cancellation takes effect, if any.
fn cancelled_at(changes: &[StoredChange]) -> Option<i64> {
    changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Cancel)
        .map(|c| c.at)
        .min()
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
