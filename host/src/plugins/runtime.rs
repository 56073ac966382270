//! The wasmtime side: one [`PluginRuntime`] (engine, linker, epoch ticker) loads components into
//! [`LoadedPlugin`]s (compiled, pre-instantiated, validated); every call or aggregation runs in a
//! fresh [`Store`] under the [`Limits`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratecard_engine::Decimal;
use ratecard_engine::plugin::{MetricAccumulator, PluginError, PriceRequest, PricedLine};
use ratecard_engine::usage::Event;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Instance, Linker};
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
        let slots = config.max_live_instances.unwrap_or(64);
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
        Ok(PluginRuntime {
            engine,
            linker: Arc::new(linker),
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads, validates, compiles (or loads from cache) and pre-instantiates a component.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.load(&bytes)
    }

    /// Validates, compiles (or loads from cache) and pre-instantiates a component.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        if bytes.len() > self.limits.component_bytes {
            return Err(LoadError::LimitExceeded {
                limit: Limit::ComponentSize,
                message: format!(
                    "{} bytes, limit {} bytes",
                    bytes.len(),
                    self.limits.component_bytes
                ),
            });
        }
        crate::plugins::validate::check_shape(bytes, &self.limits)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
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
        let metric = MetricExports::new(&instance_pre).map_err(contract)?;
        let price = price::GuestIndices::new(&instance_pre).map_err(contract)?;
        let pre = PluginPre::new(instance_pre).map_err(contract)?;
        let load_time = started.elapsed();
        let mut plugin = LoadedPlugin {
            runtime: self.clone(),
            pre,
            metric: Arc::new(metric),
            price: Arc::new(price),
            reads: Arc::default(),
            sha256,
            size: bytes.len(),
            metadata: convert::Metadata::default(),
            reference: Arc::from(""),
            load_time,
        };
        // Dry run: every export has the contract's type (all are looked up and type-checked),
        // and the plugin describes itself within the limits.
        let mut session = plugin
            .session()
            .map_err(|e| LoadError::DryRun(e.to_string()))?;
        let metadata = session
            .call(&plugin.metadata.name, 0, |bindings, store| {
                bindings.ratecard_plugin_meta().call_describe(store).map(Ok)
            })
            .map_err(|e| LoadError::DryRun(e.to_string()))?;
        plugin.metadata = convert::metadata(metadata).map_err(LoadError::DryRun)?;
        plugin.reference = Arc::from(format!(
            "{}@{}",
            plugin.metadata.name, plugin.metadata.version
        ));
        Ok(plugin)
    }
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

/// A validated, compiled, pre-instantiated plugin.
#[derive(Clone)]
pub struct LoadedPlugin {
    runtime: PluginRuntime,
    pre: PluginPre<StoreState>,
    /// The metric's and the price's exports, so a session looks up and type-checks only the
    /// interface it calls (and of `metric`, only the functions it calls).
    metric: Arc<MetricExports>,
    price: Arc<price::GuestIndices>,
    reads: Arc<ReadsByConfig>,
    sha256: String,
    size: usize,
    metadata: convert::Metadata,
    /// `name@version`, written once: every call names the plugin in its errors.
    reference: Arc<str>,
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
        self.reference.to_string()
    }

    /// Time to validate, compile (or read from the cache) and pre-instantiate.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// A fresh store and instance, with every export looked up and type-checked.
    pub fn session(&self) -> Result<Session, PluginError> {
        self.session_with(|_, store, instance| PluginBindings::new(store, instance))
    }

    /// A fresh store and instance, with the exports `load` looks up.
    fn session_with<B>(
        &self,
        load: impl FnOnce(&Self, &mut Store<StoreState>, &Instance) -> wasmtime::Result<B>,
    ) -> Result<Session<B>, PluginError> {
        let limits = &self.runtime.limits;
        let mut store = Store::new(&self.runtime.engine, StoreState::new(limits));
        store.limiter(|state| state);
        store
            .set_fuel(limits.fuel_per_call)
            .map_err(|e| failed(&self.metadata.name, e))?;
        store.set_epoch_deadline(limits.epoch_ticks());
        let started = Instant::now();
        let result = self
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .and_then(|instance| load(self, &mut store, &instance));
        let mut session = Session {
            store,
            bindings: None,
            limits: limits.clone(),
            stats: Stats::default(),
            poisoned: None,
        };
        session.stats.instantiate_time = started.elapsed();
        match result {
            Ok(bindings) => {
                session.bindings = Some(bindings);
                Ok(session)
            }
            Err(error) => Err(session.classify(&self.metadata.name, error)),
        }
    }

    /// A fresh accumulator (its own store) for a metric.
    pub fn metric(&self, config: &serde_json::Value) -> Result<PluginMetric, PluginError> {
        let reference = Arc::clone(&self.reference);
        if !self.metadata.kinds.iter().any(|k| k == "metric") {
            return Err(PluginError::InvalidConfig {
                plugin: reference.to_string(),
                message: "this plugin is not a metric plugin".to_owned(),
            });
        }
        let mut session = self.session_with(|plugin, _, instance| {
            Ok(MetricFuncs::new(*instance, Arc::clone(&plugin.metric)))
        })?;
        // `Value::to_string` goes through `fmt`, several times slower than `serde_json::to_string`.
        let config = serde_json::to_string(config).map_err(|e| PluginError::InvalidConfig {
            plugin: reference.to_string(),
            message: e.to_string(),
        })?;
        session.call(&reference, 0, |metric, store| metric.create(store, &config))?;
        Ok(PluginMetric {
            reference,
            session,
            events_held: 0,
            writer: None,
            config,
            reads: Arc::clone(&self.reads),
        })
    }

    /// Prices a custom charge in a fresh store.
    pub fn price(&self, request: &PriceRequest) -> Result<Vec<PricedLine>, PluginError> {
        Ok(self.price_with_stats(request)?.0)
    }

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
        let mut session =
            self.session_with(|plugin, store, instance| plugin.price.load(store, instance))?;
        let wit_request = convert::price_request(request);
        let n_quantities = request.quantities.len() as u64;
        let lines = session.call(&reference, n_quantities, |price, store| {
            price.call_price(store, &wit_request)
        })?;
        let size: usize = lines.iter().map(convert::priced_line_size).sum();
        session.check_output(&reference, size)?;
        let lines = lines
            .into_iter()
            .map(convert::priced_line)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|message| PluginError::InvalidOutput {
                plugin: reference.clone(),
                message,
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
    pub instantiate_time: Duration,
    pub call_time: Duration,
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
        stats
    }

    pub fn log(&self) -> &[LogLine] {
        &self.store.data().log
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
        let bindings = self.bindings.as_mut().expect("a session has bindings");
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
        message,
    }
}

/// A metric accumulator living in its own store.
#[derive(Debug)]
pub struct PluginMetric {
    reference: Arc<str>,
    session: Session<MetricFuncs>,
    events_held: u64,
    /// Writes batches with what the metric reads; made at the first `update`, so creating an
    /// accumulator costs one call.
    writer: Option<convert::BatchWriter>,
    /// The config, JSON text: what the metric reads depends on it alone.
    config: String,
    /// What the plugin's metrics read, per config (shared by the plugin's accumulators).
    reads: Arc<ReadsByConfig>,
}

/// What a plugin's metrics read of each event, per config. A metric's `reads` depends only on
/// its config (plugins are deterministic and `reads` comes before any `update`), so it is asked
/// of the first accumulator made with a config, and every later one reuses the answer instead of
/// a component call per aggregation.
#[derive(Debug, Default)]
pub(crate) struct ReadsByConfig(std::sync::RwLock<HashMap<String, Arc<convert::Reads>>>);

/// Configs remembered per plugin: plans have a few each; past this, `reads` is asked again.
const READS_CONFIGS: usize = 4096;

impl ReadsByConfig {
    fn get(&self, config: &str) -> Option<Arc<convert::Reads>> {
        let known = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known.get(config).cloned()
    }

    fn insert(&self, config: &str, reads: &Arc<convert::Reads>) {
        let mut known = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() < READS_CONFIGS {
            known.insert(config.to_owned(), Arc::clone(reads));
        }
    }
}

impl PluginMetric {
    pub fn stats(&self) -> Stats {
        self.session.stats()
    }

    pub fn log(&self) -> &[LogLine] {
        self.session.log()
    }

    /// Log messages dropped past the cap.
    pub fn log_dropped(&self) -> u64 {
        self.session.store.data().log_dropped
    }

    /// What the metric reads of each event (its `reads`, asked for once).
    pub fn reads(&mut self) -> Result<&convert::Reads, PluginError> {
        Ok(self.writer()?.reads())
    }

    fn writer(&mut self) -> Result<&mut convert::BatchWriter, PluginError> {
        if self.writer.is_none() {
            let reads = match self.reads.get(&self.config) {
                Some(reads) => reads,
                None => {
                    let fields = self.session.call(&self.reference, 0, |bindings, store| {
                        Ok(Ok(bindings.reads(store)?))
                    })?;
                    let reads = Arc::new(convert::Reads::from(fields));
                    self.session.check_output(&self.reference, reads.size())?;
                    self.reads.insert(&self.config, &reads);
                    reads
                }
            };
            self.writer = Some(convert::BatchWriter::new(reads));
        }
        Ok(self.writer.as_mut().expect("the writer was just made"))
    }

    /// `update` with a batch already in the contract's shape (no conversion).
    /// `n_events` is the number of events in the batch (it sets the fuel allowance).
    pub fn update_batch(
        &mut self,
        batch: &types::EventBatch,
        n_events: u64,
    ) -> Result<(), PluginError> {
        self.events_held += n_events;
        self.session
            .call(&self.reference, n_events, |bindings, store| {
                bindings.update(store, batch)
            })
    }
}

/// Events per `update` call into the guest. A metric's `update(a); update(b)` equals
/// `update(a ++ b)` (the contract's rule), so larger batches are passed in calls of this size:
/// the guest then reuses one small input buffer (tens of KiB) instead of growing its memory by
/// the size of the whole batch, and the per-call cost (~1 µs) is spread over many events.
pub const EVENTS_PER_CALL: usize = 1024;

impl MetricAccumulator for PluginMetric {
    fn update(&mut self, events: &[Event<'_>]) -> Result<(), PluginError> {
        let mut chunks = events.chunks(EVENTS_PER_CALL);
        // An empty batch is still one call: the plugin is told, and can refuse it.
        let first = chunks.next().unwrap_or(&[]);
        self.writer()?;
        let writer = self.writer.as_mut().expect("the writer was made");
        for chunk in std::iter::once(first).chain(chunks) {
            let batch = writer.write(chunk).map_err(|message| PluginError::Failed {
                plugin: self.reference.to_string(),
                message,
            })?;
            let n_events = chunk.len() as u64;
            self.events_held += n_events;
            self.session
                .call(&self.reference, n_events, |bindings, store| {
                    let result = bindings.update(store, batch)?;
                    // The plugin names a bad event by its place in the batch; the host by its id.
                    Ok(result.map_err(|error| convert::name_event(error, chunk)))
                })?;
        }
        Ok(())
    }

    fn save(&mut self) -> Result<Vec<u8>, PluginError> {
        let state = self
            .session
            .call(&self.reference, self.events_held, |bindings, store| {
                bindings.save(store)
            })?;
        self.session.check_output(&self.reference, state.len())?;
        Ok(state)
    }

    fn merge(&mut self, other_state: &[u8]) -> Result<(), PluginError> {
        // A saved state stands for up to as many events as it has bytes.
        self.events_held += other_state.len() as u64 / 8;
        self.session
            .call(&self.reference, self.events_held, |bindings, store| {
                bindings.merge(store, other_state)
            })
    }

    fn finish(&mut self) -> Result<Decimal, PluginError> {
        let text = self
            .session
            .call(&self.reference, self.events_held, |bindings, store| {
                bindings.finish(store)
            })?;
        self.session.check_output(&self.reference, text.len())?;
        convert::decimal(&text).map_err(|message| PluginError::InvalidOutput {
            plugin: self.reference.to_string(),
            message,
        })
    }
}
