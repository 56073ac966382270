//! The wasmtime side: one [`PluginRuntime`] (engine, linker, epoch ticker) loads components into
//! [`LoadedPlugin`]s (compiled, pre-instantiated, validated); every call or aggregation runs in a
//! fresh [`Store`] under the [`Limits`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::plugin::{MetricAccumulator, PluginError, PriceRequest, PricedLine};
use ratecard_engine::usage::Event;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};

use crate::plugins::bindings::exports::ratecard::plugin::price;
use crate::plugins::bindings::ratecard::plugin::{log, types};
use crate::plugins::bindings::{Plugin as PluginBindings, PluginPre};
use crate::plugins::convert;
use crate::plugins::error::LoadError;
use crate::plugins::limits::{EPOCH_TICK, Limit, Limits};
use crate::plugins::metric_funcs::{MetricExports, MetricFuncs};

/// The interfaces of contract 0.1.0 a component must export, and the one it may import.
pub const CONTRACT_EXPORTS: [&str; 3] = [
    "ratecard:plugin/meta@0.1.0",
    "ratecard:plugin/metric@0.1.0",
    "ratecard:plugin/price@0.1.0",
];
/// `types` holds only types (no functions); `log` is the one function a plugin may call.
pub const CONTRACT_IMPORTS: [&str; 2] =
    ["ratecard:plugin/types@0.1.0", "ratecard:plugin/log@0.1.0"];

/// How a [`PluginRuntime`] is set up.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    pub limits: Limits,
    /// Where compiled artifacts are cached (keyed by the component's hash and the engine's
    /// compatibility hash). `None`: no disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Instances that may be live at once (pooling allocator slots).
    pub max_live_instances: Option<u32>,
}

/// A wasmtime engine set up for plugins: Cranelift, component model, fuel, epochs, pooling.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<StoreState>>,
    limits: Limits,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig) -> Result<PluginRuntime, LoadError> {
        let limits = config.limits;
        let mut wasm = Config::new();
        wasm.strategy(wasmtime::Strategy::Cranelift)
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.wasm_stack_bytes)
            // Plugins are deterministic: no relaxed-SIMD or NaN nondeterminism either.
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false);
        // `perf` names plugin functions from `/tmp/perf-PID.map` (see docs/benchmarks.md).
        if std::env::var_os("RATECARD_PLUGIN_PERFMAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let slots = config.max_live_instances.unwrap_or(64).max(2);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * limits.instances as u32)
            .total_memories(slots * limits.memories as u32)
            .total_tables(slots * limits.tables as u32)
            .max_core_instances_per_component(limits.instances as u32)
            .max_memories_per_component(limits.memories as u32)
            .max_tables_per_component(limits.tables as u32)
            .max_memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements)
            // Reset a slot by scanning which pages the last instance dirtied (PAGEMAP_SCAN,
            // Linux 6.7+; `Auto` falls back elsewhere) and memsetting only those, up to the
            // keep-resident sizes: re-instantiating a guest that allocates then costs neither a
            // page fault per page nor an madvise.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(4 << 20)
            // One page: a table smaller than a page (512 functions) is then reset with a plain
            // memset, without the scan's system call (a component has several tables).
            .table_keep_resident(4 << 10);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &config.cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            let cache =
                wasmtime::Cache::new(cache).map_err(|e| LoadError::Engine(e.to_string()))?;
            wasm.cache(Some(cache));
        }
        let engine = Engine::new(&wasm).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        PluginBindings::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Engine(e.to_string()))?;
        start_epoch_ticker(&engine);
        let gate = Arc::new(Gate::new(slots, &limits));
        Ok(PluginRuntime {
            engine,
            linker: Arc::new(linker),
            limits,
            gate,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads a component file (its length checked first, the read itself bounded by the size
    /// limit, so neither a huge file nor an endless one like `/dev/zero` is read whole), then
    /// [`load`](Self::load)s it.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = read_component(path, self.limits.component_bytes)?;
        self.load(&bytes)
    }

    /// Validates, compiles (or loads from cache) and pre-instantiates a component, then runs its
    /// dry run: every export is type-checked against the contract and `describe` is called.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        if bytes.len() > self.limits.component_bytes {
            let size = format!("{} bytes", bytes.len());
            return Err(component_too_large(&size, self.limits.component_bytes));
        }
        crate::plugins::validate::check_shape(bytes, &self.limits)?;
        let sha256 = sha256_hex(bytes);
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::InvalidComponent(format!("{e:#}")))?;
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            if !CONTRACT_IMPORTS.contains(&name) {
                return Err(LoadError::ForbiddenImport(name.to_owned()));
            }
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        for wanted in CONTRACT_EXPORTS {
            if !exports.iter().any(|e| e == wanted) {
                let found = if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                };
                return Err(LoadError::Contract(format!(
                    "missing export `{wanted}` (exports {found})"
                )));
            }
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        let contract = |e: wasmtime::Error| LoadError::Contract(format!("{e:#}"));
        let metric = Arc::new(MetricExports::new(&instance_pre).map_err(contract)?);
        let price = Arc::new(price::GuestIndices::new(&instance_pre).map_err(contract)?);
        let pre = PluginPre::new(instance_pre).map_err(contract)?;
        // Dry run. Until it has described itself the plugin is named by its hash.
        let unnamed = format!("(sha256 {})", &sha256[..12]);
        let dry_run = |e: PluginError| LoadError::DryRun(e.to_string());
        let session = open_session(self, pre.instance_pre(), &unnamed, |_, instance| {
            Ok(*instance)
        })
        .map_err(dry_run)?;
        // Every export has the contract's type: each is looked up and type-checked, and a
        // mismatch names the function.
        let (mut session, instance) = session.take_bindings();
        let store = &mut session.store;
        MetricFuncs::new(instance, Arc::clone(&metric))
            .check_types(store)
            .map_err(contract)?;
        let named = |e: wasmtime::Error, what: &str| contract(e.context(what.to_owned()));
        price
            .load(&mut *store, &instance)
            .map_err(|e| named(e, "export `price` of `ratecard:plugin/price@0.1.0`"))?;
        let bindings = PluginBindings::new(&mut *store, &instance)
            .map_err(|e| named(e, "export `describe` of `ratecard:plugin/meta@0.1.0`"))?;
        let mut session = session.with_bindings(bindings);
        let described = session
            .call(&unnamed, 0, |bindings, store| {
                bindings.ratecard_plugin_meta().call_describe(store).map(Ok)
            })
            .map_err(dry_run)?;
        let metadata = convert::metadata(described).map_err(LoadError::DryRun)?;
        let reference: Arc<str> = Arc::from(format!("{}@{}", metadata.name, metadata.version));
        Ok(LoadedPlugin {
            shared: Arc::new(Shared {
                runtime: self.clone(),
                pre,
                metric,
                configs: Configs::default(),
                reference,
            }),
            price,
            sha256,
            size: bytes.len(),
            metadata,
            load_time: started.elapsed(),
        })
    }
}

/// Hex sha256 of a component, as manifests pin it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn component_too_large(size: &str, limit: usize) -> LoadError {
    LoadError::LimitExceeded {
        limit: Limit::ComponentSize,
        message: format!("{size}, limit {limit} bytes"),
    }
}

/// Reads a component file of at most `limit` bytes (see [`read_bounded`]).
pub fn read_component(path: &Path, limit: usize) -> Result<Vec<u8>, LoadError> {
    read_bounded(path, limit, |size| component_too_large(&size, limit))
}

/// Reads a file of at most `limit` bytes: the length in its metadata is checked before
/// anything is read, and the read stops past the limit (a device or a file that grows has no
/// trustworthy length). `too_large` gets what is known of the size (`"3000000000 bytes"`).
pub(crate) fn read_bounded(
    path: &Path,
    limit: usize,
    too_large: impl FnOnce(String) -> LoadError,
) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let io = |message: String| LoadError::Io {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    let metadata = file.metadata().map_err(|e| io(e.to_string()))?;
    if metadata.is_dir() {
        return Err(io("is a directory".to_owned()));
    }
    if metadata.is_file() && metadata.len() > limit as u64 {
        return Err(too_large(format!("{} bytes", metadata.len())));
    }
    let mut bytes = Vec::with_capacity((metadata.len() as usize).min(limit));
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io(e.to_string()))?;
    if bytes.len() > limit {
        return Err(too_large(format!("more than {limit} bytes")));
    }
    Ok(bytes)
}

/// Increments the engine's epoch every tick while the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ratecard-plugin-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })
        .expect("cannot start the plugin epoch thread");
}

/// Live instances, so the pooling allocator's slots are never exhausted: half of them may be
/// kept live between calls ("idle", up to `idle_memory_bytes` of linear memory together), the
/// other half serve calls, and a call that finds no free slot waits for one (every call ends,
/// within its fuel and wall-time limits) instead of failing. It also holds the total of the
/// accumulators' saved states, bounded by `total_state_bytes`.
#[derive(Debug)]
pub(crate) struct Gate {
    free_active: Mutex<u32>,
    freed: Condvar,
    free_idle: AtomicU32,
    free_idle_memory: AtomicUsize,
    state_bytes: AtomicUsize,
    total_state_bytes: usize,
}

impl Gate {
    fn new(slots: u32, limits: &Limits) -> Gate {
        let idle = slots / 2;
        Gate {
            free_active: Mutex::new(slots - idle),
            freed: Condvar::new(),
            free_idle: AtomicU32::new(idle),
            free_idle_memory: AtomicUsize::new(limits.idle_memory_bytes),
            state_bytes: AtomicUsize::new(0),
            total_state_bytes: limits.total_state_bytes,
        }
    }

    /// A slot for a call, waiting for one if all are taken.
    fn acquire(self: &Arc<Self>) -> Permit {
        let mut free = self
            .free_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit {
            gate: Arc::clone(self),
            held: Held::Active,
        }
    }

    fn release_active(&self) {
        let mut free = self
            .free_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        drop(free);
        self.freed.notify_one();
    }

    /// An idle slot with `memory` bytes, or `held` bytes more or less for an instance already
    /// holding an idle slot.
    fn try_idle(&self, held: Option<usize>, memory: usize) -> bool {
        let take = |n: u32| n.checked_sub(1);
        if held.is_none()
            && self
                .free_idle
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, take)
                .is_err()
        {
            return false;
        }
        let old = held.unwrap_or(0);
        let take_memory = |free: usize| (free + old).checked_sub(memory);
        if self
            .free_idle_memory
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, take_memory)
            .is_err()
        {
            if held.is_none() {
                self.free_idle.fetch_add(1, Ordering::AcqRel);
            }
            return false;
        }
        true
    }

    fn release_idle(&self, memory: usize) {
        self.free_idle_memory.fetch_add(memory, Ordering::AcqRel);
        self.free_idle.fetch_add(1, Ordering::AcqRel);
    }

    /// Moves a reservation of saved-state bytes from `old` to `new`; false (and `old` kept)
    /// when the total would pass the limit.
    fn resize_state(&self, old: usize, new: usize) -> bool {
        let total = self.total_state_bytes;
        self.state_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |bytes| {
                (bytes - old).checked_add(new).filter(|t| *t <= total)
            })
            .is_ok()
    }

    /// Bytes of saved state held by open accumulators.
    pub(crate) fn state_bytes(&self) -> usize {
        self.state_bytes.load(Ordering::Acquire)
    }
}

/// What a live instance holds of the [`Gate`], given back when dropped.
#[derive(Debug)]
struct Permit {
    gate: Arc<Gate>,
    held: Held,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// A slot for a call.
    Active,
    /// An idle slot and this much idle memory.
    Idle(usize),
    Nothing,
}

impl Permit {
    /// Keeps the instance live between calls with `memory` bytes of linear memory, if the idle
    /// slots and memory allow. When they do not, the permit is kept as it is: the caller drops
    /// the instance, and the permit with it, after the store (a slot is given back only once
    /// its instance is gone, or another thread could find the pool full).
    fn keep_idle(&mut self, memory: usize) -> bool {
        let held = match self.held {
            Held::Idle(held) => Some(held),
            Held::Active => None,
            Held::Nothing => return false,
        };
        if !self.gate.try_idle(held, memory) {
            return false;
        }
        if held.is_none() {
            self.gate.release_active();
        }
        self.held = Held::Idle(memory);
        true
    }

    fn release(&mut self) {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Active => self.gate.release_active(),
            Held::Idle(memory) => self.gate.release_idle(memory),
            Held::Nothing => {}
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release();
    }
}

/// What a plugin's calls and accumulators share.
pub(crate) struct Shared {
    runtime: PluginRuntime,
    pre: PluginPre<StoreState>,
    /// The metric's exports, so an accumulator looks up and type-checks only the functions it
    /// calls.
    metric: Arc<MetricExports>,
    configs: Configs,
    /// `name@version`, written once: every call names the plugin in its errors.
    reference: Arc<str>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// A fresh store and instance of `pre` (waiting for a free slot), loaded with `load`.
fn open_session<B>(
    runtime: &PluginRuntime,
    pre: &InstancePre<StoreState>,
    plugin: &str,
    load: impl FnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<B>,
) -> Result<Session<B>, PluginError> {
    let limits = &runtime.limits;
    let permit = runtime.gate.acquire();
    let mut store = Store::new(&runtime.engine, StoreState::new(limits));
    store.limiter(|state| state);
    store
        .set_fuel(limits.fuel_per_call)
        .map_err(|e| failed(plugin, e))?;
    store.set_epoch_deadline(limits.epoch_ticks());
    let started = Instant::now();
    let result = pre
        .instantiate(&mut store)
        .and_then(|instance| load(&mut store, &instance));
    let mut session = Session {
        store,
        bindings: None,
        limits: limits.clone(),
        stats: Stats::default(),
        poisoned: None,
        permit,
    };
    session.stats.instantiate_time = started.elapsed();
    match result {
        Ok(bindings) => {
            session.bindings = Some(bindings);
            Ok(session)
        }
        Err(error) => Err(session.classify(plugin, error)),
    }
}

/// A validated, compiled, pre-instantiated plugin.
#[derive(Clone)]
pub struct LoadedPlugin {
    shared: Arc<Shared>,
    price: Arc<price::GuestIndices>,
    sha256: String,
    size: usize,
    metadata: convert::Metadata,
    load_time: Duration,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("metadata", &self.metadata)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Size of the component, in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn metadata(&self) -> &convert::Metadata {
        &self.metadata
    }

    /// `name@version`.
    pub fn reference(&self) -> String {
        self.shared.reference.to_string()
    }

    /// Time to validate, compile (or read from the cache), pre-instantiate and dry-run.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Bytes of saved state the runtime's open accumulators hold (bounded by
    /// `total_state_bytes`).
    pub fn state_bytes(&self) -> usize {
        self.shared.runtime.gate.state_bytes()
    }

    /// A fresh store and instance, with every export looked up and type-checked.
    pub fn session(&self) -> Result<Session, PluginError> {
        let shared = &self.shared;
        open_session(
            &shared.runtime,
            shared.pre.instance_pre(),
            &shared.reference,
            |store, instance| PluginBindings::new(store, instance),
        )
    }

    /// A fresh accumulator for a metric. Its config is checked by `create` in an instance of
    /// its own the first time it is seen (plugins are deterministic: a config `create` took
    /// once, it takes again); the accumulator's instance is made at its first call.
    pub fn metric(&self, config: &serde_json::Value) -> Result<PluginMetric, PluginError> {
        let shared = &self.shared;
        if !self.metadata.kinds.iter().any(|k| k == "metric") {
            return Err(PluginError::InvalidConfig {
                plugin: self.reference(),
                message: "this plugin is not a metric plugin".to_owned(),
            });
        }
        // `Value::to_string` goes through `fmt`, several times slower than `serde_json::to_string`.
        let config = serde_json::to_string(config).map_err(|e| PluginError::InvalidConfig {
            plugin: self.reference(),
            message: e.to_string(),
        })?;
        let mut metric = PluginMetric {
            shared: Arc::clone(shared),
            config,
            live: Live::Fresh,
            events_held: 0,
            writer: None,
            state_reserved: 0,
            stats: Stats::default(),
            log: Vec::new(),
            log_dropped: 0,
            failure: None,
        };
        if !shared.configs.created(&metric.config) {
            metric.open()?;
            shared.configs.insert(&metric.config, None);
            // The instance is the accumulator's own: it stays live if there is room.
            metric.settle(false)?;
        }
        Ok(metric)
    }

    /// Prices a custom charge in a fresh store.
    pub fn price(&self, request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        Ok(self.price_with_stats(request)?.0)
    }

    /// Prices a custom charge in a fresh store, checking the result against the contract's
    /// invariants (see `convert::priced_lines`).
    pub fn price_with_stats(
        &self,
        request: &PriceRequest,
    ) -> Result<(Vec<PricedLine>, Stats), PluginError> {
        let reference = self.reference();
        if !self.metadata.kinds.iter().any(|k| k == "price") {
            return Err(PluginError::InvalidConfig {
                plugin: reference,
                message: "this plugin is not a price plugin".to_owned(),
            });
        }
        let price = Arc::clone(&self.price);
        let mut session = open_session(
            &self.shared.runtime,
            self.shared.pre.instance_pre(),
            &reference,
            |store, instance| price.load(store, instance),
        )?;
        let wit_request = convert::price_request(request);
        let n_quantities = request.quantities.len() as u64;
        let lines = session.call(&reference, n_quantities, |price, store| {
            price.call_price(store, &wit_request)
        })?;
        let size: usize = lines.iter().map(convert::priced_line_size).sum();
        session.check_output(&reference, size)?;
        let lines = convert::priced_lines(request, lines).map_err(|message| {
            PluginError::InvalidOutput {
                plugin: reference.clone(),
                message: format!("`price`: {message}"),
            }
        })?;
        Ok((lines, session.stats()))
    }
}

/// What running a plugin cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub calls: u64,
    pub fuel_used: u64,
    /// Largest linear memory, in bytes.
    pub peak_memory_bytes: usize,
    /// Instances made (an accumulator whose instance was dropped between batches makes another).
    pub instances: u64,
    pub instantiate_time: Duration,
    pub call_time: Duration,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.calls += other.calls;
        self.fuel_used += other.fuel_used;
        self.peak_memory_bytes = self.peak_memory_bytes.max(other.peak_memory_bytes);
        self.instances += other.instances;
        self.instantiate_time += other.instantiate_time;
        self.call_time += other.call_time;
    }
}

/// A log line written by a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// Per-store state: the resource limiter and the log.
#[derive(Debug)]
pub struct StoreState {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    log_messages: usize,
    log_message_bytes: usize,
    peak_memory_bytes: usize,
    /// The limit the guest ran into, if any (read when a call fails).
    limit_hit: Option<Limit>,
    pub log: Vec<LogLine>,
    pub log_dropped: u64,
}

impl StoreState {
    fn new(limits: &Limits) -> StoreState {
        StoreState {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            log_messages: limits.log_messages,
            log_message_bytes: limits.log_message_bytes,
            peak_memory_bytes: 0,
            limit_hit: None,
            log: Vec::new(),
            log_dropped: 0,
        }
    }
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.limit_hit = Some(Limit::Memory);
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        self.peak_memory_bytes = self.peak_memory_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.limit_hit = Some(Limit::TableElements);
            return Err(wasmtime::Error::msg("table limit exceeded"));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

impl types::Host for StoreState {}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, mut message: String) {
        if self.log.len() >= self.log_messages {
            self.log_dropped += 1;
            return;
        }
        if message.len() > self.log_message_bytes {
            let mut end = self.log_message_bytes;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        self.log.push(LogLine { level, message });
    }
}

/// One store and instance of a plugin, with the exports `B` (all of them by default).
pub struct Session<B = PluginBindings> {
    store: Store<StoreState>,
    bindings: Option<B>,
    limits: Limits,
    stats: Stats,
    /// Set once a call trapped: the instance is not used again.
    poisoned: Option<PluginError>,
    /// The pool slot the instance takes (after `store`: the instance goes first).
    permit: Permit,
}

impl<B> std::fmt::Debug for Session<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<B> Session<B> {
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.peak_memory_bytes = self.store.data().peak_memory_bytes;
        stats.instances = 1;
        stats
    }

    pub fn log(&self) -> &[LogLine] {
        &self.store.data().log
    }

    fn take_bindings(mut self) -> (Session<()>, B) {
        let bindings = self.bindings.take().expect("a session has bindings");
        (self.with_bindings(()), bindings)
    }

    fn with_bindings<C>(self, bindings: C) -> Session<C> {
        Session {
            store: self.store,
            bindings: Some(bindings),
            limits: self.limits,
            stats: self.stats,
            poisoned: self.poisoned,
            permit: self.permit,
        }
    }

    /// Calls into the guest with fuel for `n_events` and a fresh wall-time deadline; maps traps
    /// and limit hits to typed errors.
    pub fn call<T>(
        &mut self,
        plugin: &str,
        n_events: u64,
        f: impl FnOnce(
            &mut B,
            &mut Store<StoreState>,
        ) -> wasmtime::Result<Result<T, types::PluginError>>,
    ) -> Result<T, PluginError> {
        if let Some(error) = &self.poisoned {
            return Err(error.clone());
        }
        let fuel = self
            .limits
            .fuel_per_call
            .saturating_add(self.limits.fuel_per_event.saturating_mul(n_events));
        self.store.set_fuel(fuel).map_err(|e| failed(plugin, e))?;
        self.store.set_epoch_deadline(self.limits.epoch_ticks());
        let Some(bindings) = self.bindings.as_mut() else {
            return Err(PluginError::Failed {
                plugin: plugin.to_owned(),
                message: "the instance has no bindings".to_owned(),
            });
        };
        let started = Instant::now();
        let result = f(bindings, &mut self.store);
        self.stats.call_time += started.elapsed();
        self.stats.calls += 1;
        self.stats.fuel_used += fuel - self.store.get_fuel().unwrap_or(0);
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(convert::plugin_error(plugin, error)),
            Err(error) => {
                let error = self.classify(plugin, error);
                self.poisoned = Some(error.clone());
                Err(error)
            }
        }
    }

    fn classify(&mut self, plugin: &str, error: wasmtime::Error) -> PluginError {
        let limit = self
            .store
            .data()
            .limit_hit
            .or_else(|| match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => Some(Limit::Fuel),
                Some(Trap::Interrupt) => Some(Limit::WallTime),
                Some(Trap::StackOverflow) => Some(Limit::Stack),
                _ => None,
            })
            .or_else(|| {
                // The pool's slots are gated, so this is a component asking for more core
                // instances, memories or tables than its share.
                error
                    .chain()
                    .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
                    .then_some(Limit::Instances)
            });
        match limit {
            Some(limit) => PluginError::LimitExceeded {
                plugin: plugin.to_owned(),
                limit: limit.name().to_owned(),
            },
            None => failed(plugin, error),
        }
    }

    fn check_output(&mut self, plugin: &str, size: usize) -> Result<(), PluginError> {
        if size > self.limits.output_bytes {
            let error = PluginError::LimitExceeded {
                plugin: plugin.to_owned(),
                limit: Limit::OutputSize.name().to_owned(),
            };
            self.poisoned = Some(error.clone());
            return Err(error);
        }
        Ok(())
    }
}

fn failed(plugin: &str, error: wasmtime::Error) -> PluginError {
    let message = match error.downcast_ref::<Trap>() {
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{error:#}"),
    };
    PluginError::Failed {
        plugin: plugin.to_owned(),
        message: convert::guest_text(&message, 4 * convert::GUEST_TEXT_BYTES).into_owned(),
    }
}

/// What a plugin's metrics are known to do with each config: `create` took it, and what the
/// metric reads of each event (`None` until asked). Both depend only on the config (plugins
/// are deterministic, `reads` comes before any `update`), so they are asked of the first
/// accumulator made with a config, and every later one skips those calls.
#[derive(Debug, Default)]
pub(crate) struct Configs(RwLock<HashMap<String, Option<Arc<convert::Reads>>>>);

/// Configs remembered per plugin: plans have a few each; past this, they are asked again.
const CONFIGS: usize = 4096;

impl Configs {
    fn created(&self, config: &str) -> bool {
        self.read().contains_key(config)
    }

    fn reads(&self, config: &str) -> Option<Arc<convert::Reads>> {
        self.read().get(config).cloned().flatten()
    }

    fn insert(&self, config: &str, reads: Option<&Arc<convert::Reads>>) {
        let mut known = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() < CONFIGS || known.contains_key(config) {
            known.insert(config.to_owned(), reads.cloned());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Option<Arc<convert::Reads>>>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A metric accumulator: one aggregation's state, in an instance of its own while it is live.
///
/// Between batches the accumulator's instance stays live only while the runtime has idle room
/// (slots and memory, see `Gate`); otherwise it is dropped and the accumulator keeps the bytes
/// its `save` returned, restoring them (`create`, then `merge` of the saved state) at its next
/// call. The state is saved after every `update` and `merge` whatever happens next, so what a
/// metric holds is checked against `output_bytes` and `total_state_bytes` the same way on every
/// run and any number of threads; a plugin that keeps the contract (`save` then `merge` into a
/// fresh accumulator gives the same accumulator) gives the same quantity live or restored.
/// Any number of accumulators can be open at once.
#[derive(Debug)]
pub struct PluginMetric {
    shared: Arc<Shared>,
    /// The config, JSON text.
    config: String,
    live: Live,
    events_held: u64,
    /// Writes batches with what the metric reads; made at the first `update`.
    writer: Option<convert::BatchWriter>,
    /// Bytes of the last saved state, counted in the runtime's `total_state_bytes`.
    state_reserved: usize,
    /// Of instances already dropped.
    stats: Stats,
    log: Vec<LogLine>,
    log_dropped: u64,
    /// The error that ended the accumulator: every later call repeats it.
    failure: Option<PluginError>,
}

#[derive(Debug)]
enum Live {
    /// Nothing since `create`: no instance, no state.
    Fresh,
    Open(Box<Session<MetricFuncs>>),
    /// Saved state, instance dropped.
    Parked(Vec<u8>),
}

impl PluginMetric {
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        if let Live::Open(session) = &self.live {
            stats.add(&session.stats());
        }
        stats
    }

    /// What the plugin logged, up to `log_messages` lines.
    pub fn log(&self) -> Vec<LogLine> {
        let mut log = self.log.clone();
        if let Live::Open(session) = &self.live {
            let room = self.shared.runtime.limits.log_messages
                - log.len().min(self.shared.runtime.limits.log_messages);
            log.extend(session.log().iter().take(room).cloned());
        }
        log
    }

    /// Log messages dropped past the cap.
    pub fn log_dropped(&self) -> u64 {
        let kept = self.log().len() as u64;
        let mut total = self.log_dropped + self.log.len() as u64;
        if let Live::Open(session) = &self.live {
            let data = session.store.data();
            total += data.log_dropped + data.log.len() as u64;
        }
        total - kept
    }

    /// What the metric reads of each event (its `reads`, asked for once per config).
    pub fn reads(&mut self) -> Result<&convert::Reads, PluginError> {
        self.writer()?;
        match &self.writer {
            Some(writer) => Ok(writer.reads()),
            None => Err(self.fail("no batch writer")),
        }
    }

    fn fail(&self, message: &str) -> PluginError {
        PluginError::Failed {
            plugin: self.shared.reference.to_string(),
            message: message.to_owned(),
        }
    }

    fn writer(&mut self) -> Result<(), PluginError> {
        if self.writer.is_some() {
            return Ok(());
        }
        let reads = match self.shared.configs.reads(&self.config) {
            Some(reads) => reads,
            None => {
                let shared = Arc::clone(&self.shared);
                let session = self.open()?;
                let fields = session.call(&shared.reference, 0, |bindings, store| {
                    Ok(Ok(bindings.reads(store)?))
                })?;
                let reads = Arc::new(convert::Reads::from(fields));
                session.check_output(&shared.reference, reads.size())?;
                shared.configs.insert(&self.config, Some(&reads));
                reads
            }
        };
        self.writer = Some(convert::BatchWriter::new(reads));
        Ok(())
    }

    /// The live instance, made (and restored from the saved state) if there is none.
    fn open(&mut self) -> Result<&mut Session<MetricFuncs>, PluginError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if !matches!(self.live, Live::Open(_)) {
            let shared = &self.shared;
            let reference = &shared.reference;
            let mut session = open_session(
                &shared.runtime,
                shared.pre.instance_pre(),
                reference,
                |_, instance| Ok(MetricFuncs::new(*instance, Arc::clone(&shared.metric))),
            )
            .inspect_err(|e| self.failure = Some(e.clone()))?;
            let config = &self.config;
            session.call(reference, 0, |metric, store| metric.create(store, config))?;
            if let Live::Parked(state) = &self.live {
                session.call(reference, self.events_held, |metric, store| {
                    metric.merge(store, state)
                })?;
            }
            self.live = Live::Open(Box::new(session));
        }
        match &mut self.live {
            Live::Open(session) => Ok(session),
            _ => Err(PluginError::Failed {
                plugin: self.shared.reference.to_string(),
                message: "the instance was just made".to_owned(),
            }),
        }
    }

    /// After a call that changed the state: saves it (when `save`), then keeps the instance live if there is idle room, or drops it and keeps the bytes.
    /// Returns the saved state.
    fn settle(&mut self, save: bool) -> Result<Option<Vec<u8>>, PluginError> {
        let reference = Arc::clone(&self.shared.reference);
        let events_held = self.events_held;
        let Live::Open(session) = &mut self.live else {
            return Ok(None);
        };
        let state = if save {
            let state = session.call(&reference, events_held, |bindings, store| {
                bindings.save(store)
            })?;
            session.check_output(&reference, state.len())?;
            if !self
                .shared
                .runtime
                .gate
                .resize_state(self.state_reserved, state.len())
            {
                return Err(PluginError::LimitExceeded {
                    plugin: reference.to_string(),
                    limit: Limit::TotalState.name().to_owned(),
                });
            }
            self.state_reserved = state.len();
            Some(state)
        } else {
            None
        };
        let memory = session.store.data().peak_memory_bytes;
        if session.permit.keep_idle(memory) {
            return Ok(state);
        }
        let Live::Open(session) = std::mem::replace(&mut self.live, Live::Fresh) else {
            return Ok(state);
        };
        self.absorb(*session);
        // The bytes move into the parked accumulator; `save` reads them from there.
        if let Some(state) = state {
            self.live = Live::Parked(state);
        }
        Ok(None)
    }

    /// Keeps what a dropped instance cost and logged.
    fn absorb(&mut self, session: Session<MetricFuncs>) {
        self.stats.add(&session.stats());
        let limit = self.shared.runtime.limits.log_messages;
        let data = session.store.data();
        let room = limit.saturating_sub(self.log.len());
        self.log.extend(data.log.iter().take(room).cloned());
        self.log_dropped += data.log_dropped + data.log.len().saturating_sub(room) as u64;
    }

    /// Runs `f`. After an error the plugin returned as a value the accumulator stays usable
    /// (settled like after any call, so it holds no call slot); a trap, a limit or a failed
    /// restore ends it: later calls repeat the error and its instance is dropped at once.
    fn with_open<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let result = f(self);
        if let Err(error) = &result {
            let usable = self.failure.is_none()
                && matches!(&self.live, Live::Open(session) if session.poisoned.is_none());
            if !usable || self.settle(true).is_err() {
                self.failure.get_or_insert_with(|| error.clone());
                self.close();
            }
        }
        result
    }

    /// Drops the instance, keeping what it cost and logged.
    fn close(&mut self) {
        if let Live::Open(session) = std::mem::replace(&mut self.live, Live::Fresh) {
            self.absorb(*session);
        }
    }

    /// Gives the saved state's share of `total_state_bytes` back (once finished, nothing is
    /// restored again).
    fn release_state(&mut self) {
        if self.state_reserved > 0 {
            self.shared
                .runtime
                .gate
                .resize_state(self.state_reserved, 0);
            self.state_reserved = 0;
        }
    }

    /// `update` with a batch already in the contract's shape (no conversion), on the live
    /// instance, without saving after it: the call alone (benchmarks measure it).
    /// `n_events` is the number of events in the batch (it sets the fuel allowance).
    pub fn update_batch(&mut self, batch: &[u8], n_events: u64) -> Result<(), PluginError> {
        self.with_open(|metric| {
            metric.events_held += n_events;
            let reference = Arc::clone(&metric.shared.reference);
            metric
                .open()?
                .call(&reference, n_events, |bindings, store| {
                    bindings.update(store, batch)
                })
        })
    }

    /// `update` in calls of [`EVENTS_PER_CALL`] events, on the live instance.
    fn update_chunks(&mut self, events: &[Event<'_>]) -> Result<(), PluginError> {
        self.open()?;
        self.writer()?;
        let reference = Arc::clone(&self.shared.reference);
        let mut chunks = events.chunks(EVENTS_PER_CALL);
        // An empty batch is still one call: the plugin is told, and can refuse it.
        let first = chunks.next().unwrap_or(&[]);
        for chunk in std::iter::once(first).chain(chunks) {
            let Some(writer) = self.writer.as_mut() else {
                return Err(self.fail("no batch writer"));
            };
            let batch = writer.write(chunk).map_err(|message| PluginError::Failed {
                plugin: reference.to_string(),
                message,
            })?;
            let n_events = chunk.len() as u64;
            self.events_held += n_events;
            // Opened above, and a call that fails ends the loop. (The writer's buffer is
            // borrowed by the call: the session is reached by field, not by `open`.)
            let Live::Open(session) = &mut self.live else {
                return Err(PluginError::Failed {
                    plugin: reference.to_string(),
                    message: "the accumulator has no live instance".to_owned(),
                });
            };
            session.call(&reference, n_events, |bindings, store| {
                let result = bindings.update(store, batch)?;
                // The plugin names a bad event by its place in the batch; the host by its id.
                Ok(result.map_err(|error| convert::name_event(error, chunk)))
            })?;
        }
        Ok(())
    }
}

impl Drop for PluginMetric {
    fn drop(&mut self) {
        self.release_state();
    }
}

/// Events per `update` call into the guest. A metric's `update(a); update(b)` equals
/// `update(a ++ b)` (the contract's rule), so larger batches are passed in calls of this size:
/// the guest then reuses one small input buffer (tens of KiB) instead of growing its memory by
/// the size of the whole batch, and the per-call cost (~1 µs) is spread over many events.
pub const EVENTS_PER_CALL: usize = 1024;

impl MetricAccumulator for PluginMetric {
    fn update(&mut self, events: &[Event<'_>]) -> Result<(), PluginError> {
        self.with_open(|metric| {
            metric.update_chunks(events)?;
            metric.settle(true).map(drop)
        })
    }

    fn save(&mut self) -> Result<Vec<u8>, PluginError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        if let Live::Parked(state) = &self.live {
            return Ok(state.clone());
        }
        self.with_open(|metric| {
            metric.open()?;
            match (metric.settle(true)?, &metric.live) {
                (Some(state), _) => Ok(state),
                (None, Live::Parked(state)) => Ok(state.clone()),
                (None, _) => Err(metric.fail("no state was saved")),
            }
        })
    }

    fn merge(&mut self, other_state: &[u8]) -> Result<(), PluginError> {
        self.with_open(|metric| {
            // A saved state stands for up to as many events as it has bytes.
            metric.events_held += other_state.len() as u64 / 8;
            let reference = Arc::clone(&metric.shared.reference);
            let held = metric.events_held;
            metric.open()?.call(&reference, held, |bindings, store| {
                bindings.merge(store, other_state)
            })?;
            metric.settle(true).map(drop)
        })
    }

    fn finish(&mut self) -> Result<Decimal, PluginError> {
        self.finish_with(&[])
    }

    /// The last batch and `finish`, with no save between them.
    fn finish_with(&mut self, last: &[Event<'_>]) -> Result<Decimal, PluginError> {
        let text = self.with_open(|metric| {
            metric.open()?;
            if !last.is_empty() {
                metric.update_chunks(last)?;
            }
            let reference = Arc::clone(&metric.shared.reference);
            let held = metric.events_held;
            let session = metric.open()?;
            let text = session.call(&reference, held, |bindings, store| bindings.finish(store))?;
            session.check_output(&reference, text.len())?;
            metric.close();
            metric.release_state();
            metric.failure = Some(metric.fail("`finish` was already called"));
            Ok(text)
        })?;
        convert::decimal("`finish`", &text).map_err(|message| PluginError::InvalidOutput {
            plugin: self.shared.reference.to_string(),
            message,
        })
    }
}
