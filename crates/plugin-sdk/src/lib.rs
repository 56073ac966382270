//! Write Ratecard pricing plugins in Rust.
//!
//! A plugin is a WebAssembly component implementing the contract in `wit/plugin.wit`
//! (`ratecard:plugin@0.1.0`): a **custom metric** (an accumulator fed batches of usage events) and/or
//! a **custom price** (quantities and context in, priced lines out). Plugins import nothing but a
//! log function: no clock, no randomness, no files, no network. Same input, same output.
//!
//! A metric is a type implementing [`Metric`], exported with [`export_metric!`]:
//!
//! ```
//! use ratecard_plugin::{Decimal, Events, Metric, Reads, Result};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! pub struct TotalBytes { property: String, total: Decimal }
//!
//! #[derive(serde::Deserialize)]
//! pub struct Config { property: String }
//!
//! impl Metric for TotalBytes {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self> {
//!         Ok(TotalBytes { property: config.property, total: Decimal::ZERO })
//!     }
//!     fn reads(&self) -> Reads {
//!         Reads::timestamps().property(&self.property)
//!     }
//!     fn update(&mut self, events: &Events) -> Result<()> {
//!         for event in events {
//!             self.total += event.decimal(&self.property)?;
//!         }
//!         Ok(())
//!     }
//!     fn merge(&mut self, other: Self) -> Result<()> {
//!         self.total += other.total;
//!         Ok(())
//!     }
//!     fn finish(&self) -> Result<Decimal> {
//!         Ok(self.total)
//!     }
//! }
//!
//! ratecard_plugin::export_metric!(TotalBytes);
//! ```
//!
//! Build it for `wasm32-unknown-unknown` and turn it into a component with `ratecard plugin build`
//! (which runs cargo and `wit-component` in-process); `ratecard plugin new NAME` scaffolds a crate.
//! The plugin's name, version and description are its package's (`Cargo.toml`).
//!
//! # Events
//!
//! `update` gets the host's batch as [`Events`]: iterate it (`for event in events`), and read what
//! the metric needs from each [`EventRef`] (`timestamp_ms()`, `decimal("mbps")`, `string(..)`,
//! `code()`, `id()`, `property(..)`). Fields are read from the batch on access, so asking for
//! one property of each event costs one property, not the whole event. A metric that reads the
//! same number from every event goes fastest through the column readers,
//! `events.timestamps_ms().zip(events.decimal_column("mbps")?)`, which read the numbers of the
//! whole batch at once, or refuse it naming its first bad event (see [`Events::decimal_column`];
//! [`Events::decimals`] gives each event's result instead).
//!
//! A metric says what of each event it reads ([`Metric::reads`], by default everything): the
//! host then passes only that, which is faster and shows a third-party plugin nothing it does
//! not need. In native tests, build events with [`event`] and pass
//! `&Batch::with_reads(&events, &metric.reads()).events()`: the same reading code runs on the
//! same parts of the events as in the host.
//!
//! An error about one event is [`EventRef::invalid`]: the host names the event by its id.
//!
//! # State
//!
//! The host keeps one accumulator alive per aggregation (a plugin instance, in its own store,
//! holds exactly one), so `update` never re-reads state. `save` serializes the accumulator with
//! `serde_json` so partial aggregates survive a restart and merge across workers; `merge` reads
//! another partial's saved state and calls [`Metric::merge`]. `merge` must be commutative and
//! associative: the host merges partials in any order.

// The generated bindings name this crate by its public path.
extern crate self as ratecard_plugin;

pub use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "ratecard_plugin::bindings",
        runtime_path: "ratecard_plugin::__rt",
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub use serde_json as __serde_json;
#[doc(hidden)]
pub use wit_bindgen::rt as __rt;

pub use bindings::ratecard::plugin::types::{
    BreakdownRow, EventError, EventFields, GroupQuantity, Metadata, PluginError, PluginKind,
    PriceRequest, PricedLine,
};

mod events;
pub use events::{
    Batch, Decimals, Event, EventIter, EventRef, Events, Property, Reads, Value, event, num, string,
};
#[doc(hidden)]
pub use ratecard_plugin_wire::{field, kind};

#[cfg(all(target_arch = "wasm32", feature = "first-arena"))]
mod first_arena {
    //! The guest's global allocator: the first allocations of an instance come from a static
    //! arena, then from the standard allocator.
    //!
    //! The host runs every aggregation and every price in a fresh instance. The standard
    //! allocator takes memory with `memory.grow` on its first allocation, and a grown memory
    //! costs the host two `mprotect`s and a TLB flush per instance (grow, then reset). The arena
    //! lives in `.bss`, inside the module's initial memory, so a `create` or a small `price`
    //! never grows memory. Memory freed inside the arena is reused only when it was the latest
    //! allocation (a bump allocator); the arena wastes at most its own size.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::UnsafeCell;

    const ARENA_BYTES: usize = 64 << 10;

    #[repr(C, align(16))]
    struct Arena {
        bytes: UnsafeCell<[u8; ARENA_BYTES]>,
        /// Offset of the first free byte.
        next: UnsafeCell<usize>,
    }

    // SAFETY: a wasm32 guest without the threads proposal has exactly one thread.
    unsafe impl Sync for Arena {}

    static ARENA: Arena = Arena {
        bytes: UnsafeCell::new([0; ARENA_BYTES]),
        next: UnsafeCell::new(0),
    };

    #[derive(Debug)]
    pub struct FirstArena;

    impl FirstArena {
        fn base() -> usize {
            ARENA.bytes.get() as usize
        }

        fn contains(ptr: *mut u8) -> bool {
            let addr = ptr as usize;
            addr >= Self::base() && addr < Self::base() + ARENA_BYTES
        }
    }

    // SAFETY: blocks handed out are in bounds of the arena, aligned as asked and never handed
    // out twice while live (the bump offset only moves back over the latest block when it is
    // freed); everything else is the standard allocator's.
    unsafe impl GlobalAlloc for FirstArena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: single-threaded, and no reference to `next` outlives this call.
            let next = unsafe { &mut *ARENA.next.get() };
            let base = Self::base();
            let start = (base + *next).next_multiple_of(layout.align()) - base;
            match start.checked_add(layout.size()) {
                Some(end) if end <= ARENA_BYTES => {
                    *next = end;
                    (base + start) as *mut u8
                }
                // SAFETY: the caller's contract, passed on.
                _ => unsafe { System.alloc(layout) },
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if Self::contains(ptr) {
                // SAFETY: as in `alloc`.
                let next = unsafe { &mut *ARENA.next.get() };
                let offset = ptr as usize - Self::base();
                if offset + layout.size() == *next {
                    *next = offset;
                }
                return;
            }
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if !Self::contains(ptr) {
                // SAFETY: `ptr` came from `System` with this layout.
                return unsafe { System.realloc(ptr, layout, new_size) };
            }
            // SAFETY: as in `alloc`.
            let next = unsafe { &mut *ARENA.next.get() };
            let offset = ptr as usize - Self::base();
            // The latest block grows or shrinks in place while it fits.
            if offset + layout.size() == *next && offset + new_size <= ARENA_BYTES {
                *next = offset + new_size;
                return ptr;
            }
            // SAFETY: `new_size` is non-zero and fits the alignment (the caller's contract).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as in `alloc`; the blocks do not overlap (the old one is live).
            unsafe {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: FirstArena = FirstArena;
}

/// The result of a plugin function.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// The current version of the plugin contract this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The WIT text of the contract (`ratecard:plugin@0.1.0`).
pub const CONTRACT_WIT: &str = include_str!("../wit/plugin.wit");

/// A custom metric: an accumulator over usage events.
///
/// `merge` must be commutative and associative (partials are merged in any order), and
/// `update(a); update(b)` must equal `update(a ++ b)`.
pub trait Metric: Serialize + DeserializeOwned + 'static {
    /// The config the plugin accepts, read from the plan's JSON.
    type Config: DeserializeOwned;
    /// The JSON Schema of [`Metric::Config`], reported in the plugin's metadata.
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object"}"#;

    fn new(config: Self::Config) -> Result<Self>;

    /// What of each event [`Metric::update`] reads: the host passes only that (the default:
    /// everything). A metric that reads a property or two of each event goes markedly faster
    /// when it says so, and sees nothing it does not need (`Reads::timestamps().property("mbps")`).
    fn reads(&self) -> Reads {
        Reads::everything()
    }

    fn update(&mut self, events: &Events<'_>) -> Result<()>;
    fn merge(&mut self, other: Self) -> Result<()>;
    fn finish(&self) -> Result<Decimal>;
}

/// A custom price: quantities and context in, priced lines out.
pub trait Price: 'static {
    type Config: DeserializeOwned;
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object"}"#;

    fn price(config: Self::Config, request: &PriceRequest) -> Result<Vec<PricedLine>>;
}

/// Reads a JSON config into the plugin's config type.
pub fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C> {
    let text = if config.trim().is_empty() {
        "null"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| PluginError::InvalidConfig(e.to_string()))
}

/// Reads a decimal written in plain notation.
pub fn parse_decimal(text: &str) -> Result<Decimal> {
    text.parse::<Decimal>()
        .map_err(|e| PluginError::InvalidInput(format!("`{text}` is not a decimal: {e}")))
}

/// Writes a decimal for the host: plain notation, trailing zeros removed.
pub fn format_decimal(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Log a message through the host (which may drop it). Only works inside a component.
///
/// A plugin that calls any of these imports the contract's `log`, and each of its fresh
/// instances then costs more: lowering the import needs the plugin's own memory, so
/// wit-component adds a shim and a fixup module, five core instances instead of one (measured:
/// ~1.2× the fresh instance + `create` of a plugin that does not log, ~1.4 µs). A plugin that
/// never logs does not import it.
pub mod log {
    use crate::bindings::ratecard::plugin::log::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// A [`Metric`] with its config and scratch space: the accumulator of one plugin instance. Used
/// by [`export_metric!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Accumulator<M> {
    state: std::cell::RefCell<M>,
    /// Scratch for reading batches, reused across calls.
    value_slots: std::cell::RefCell<Vec<u32>>,
}

impl<M: Metric> Accumulator<M> {
    pub fn create(config: &str) -> Result<Self> {
        let config = parse_config::<M::Config>(config)?;
        Ok(Accumulator {
            state: std::cell::RefCell::new(M::new(config)?),
            value_slots: Default::default(),
        })
    }

    pub fn reads(&self) -> Reads {
        self.state.borrow().reads()
    }

    pub fn update(&self, events: &Events<'_>) -> Result<()> {
        self.state.borrow_mut().update(events)
    }

    /// `update` with a batch of the contract (`event-batch`).
    pub fn update_batch(&self, batch: &[u8]) -> Result<()> {
        let mut value_slots = self.value_slots.borrow_mut();
        let events = Events::parse(batch, &mut value_slots)?;
        self.update(&events)
    }

    pub fn save(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&*self.state.borrow())
            .map_err(|e| PluginError::Failed(format!("cannot save state: {e}")))
    }

    pub fn merge(&self, state: &[u8]) -> Result<()> {
        let other: M =
            serde_json::from_slice(state).map_err(|e| PluginError::InvalidState(e.to_string()))?;
        self.state.borrow_mut().merge(other)
    }

    pub fn finish(&self) -> Result<String> {
        self.state.borrow().finish().map(format_decimal)
    }
}

#[doc(hidden)]
pub fn __metadata(
    name: &str,
    version: &str,
    description: &str,
    kinds: Vec<PluginKind>,
    config_schema: &str,
) -> Metadata {
    Metadata {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        kinds,
        config_schema: config_schema.to_owned(),
    }
}

#[doc(hidden)]
pub fn __price<P: Price>(request: PriceRequest) -> Result<Vec<PricedLine>> {
    let config = parse_config::<P::Config>(&request.config)?;
    P::price(config, &request)
}

/// Exports a [`Metric`] as the plugin of this crate (name, version and description from Cargo).
#[macro_export]
macro_rules! export_metric {
    ($metric:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __RatecardPlugin;
        impl $crate::bindings::exports::ratecard::plugin::meta::Guest for __RatecardPlugin {
            fn describe() -> $crate::Metadata {
                $crate::__metadata(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                    vec![$crate::PluginKind::Metric],
                    <$metric as $crate::Metric>::CONFIG_SCHEMA,
                )
            }
        }
        thread_local! {
            // The instance's one accumulator (a component instance is single-threaded).
            static __RATECARD_ACCUMULATOR: $crate::__Slot<$metric> =
                const { $crate::__Slot::new() };
        }
        impl $crate::bindings::exports::ratecard::plugin::metric::Guest for __RatecardPlugin {
            fn create(config: String) -> $crate::Result<()> {
                __RATECARD_ACCUMULATOR.with(|slot| slot.create(&config))
            }
            fn reads() -> $crate::EventFields {
                __RATECARD_ACCUMULATOR.with(|slot| slot.reads())
            }
            fn update(events: Vec<u8>) -> $crate::Result<()> {
                __RATECARD_ACCUMULATOR.with(|slot| slot.update(&events))
            }
            fn save() -> $crate::Result<Vec<u8>> {
                __RATECARD_ACCUMULATOR.with(|slot| slot.save())
            }
            fn merge(state: Vec<u8>) -> $crate::Result<()> {
                __RATECARD_ACCUMULATOR.with(|slot| slot.merge(&state))
            }
            fn finish() -> $crate::Result<String> {
                __RATECARD_ACCUMULATOR.with(|slot| slot.finish())
            }
        }
        impl $crate::bindings::exports::ratecard::plugin::price::Guest for __RatecardPlugin {
            fn price(
                _request: $crate::PriceRequest,
            ) -> $crate::Result<Vec<$crate::PricedLine>> {
                Err($crate::PluginError::Failed("this plugin is not a price plugin".into()))
            }
        }
        // Only in the component: native builds (unit tests) cannot link these export names.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(
            __RatecardPlugin with_types_in $crate::bindings
        );
    };
}

/// Exports a [`Price`] as the plugin of this crate (name, version and description from Cargo).
#[macro_export]
macro_rules! export_price {
    ($price:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __RatecardPlugin;
        impl $crate::bindings::exports::ratecard::plugin::meta::Guest for __RatecardPlugin {
            fn describe() -> $crate::Metadata {
                $crate::__metadata(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                    vec![$crate::PluginKind::Price],
                    <$price as $crate::Price>::CONFIG_SCHEMA,
                )
            }
        }
        impl $crate::bindings::exports::ratecard::plugin::metric::Guest for __RatecardPlugin {
            fn create(_config: String) -> $crate::Result<()> {
                Err($crate::__not_a_metric())
            }
            fn reads() -> $crate::EventFields {
                $crate::Reads::everything().into()
            }
            fn update(_events: Vec<u8>) -> $crate::Result<()> {
                Err($crate::__not_a_metric())
            }
            fn save() -> $crate::Result<Vec<u8>> {
                Err($crate::__not_a_metric())
            }
            fn merge(_state: Vec<u8>) -> $crate::Result<()> {
                Err($crate::__not_a_metric())
            }
            fn finish() -> $crate::Result<String> {
                Err($crate::__not_a_metric())
            }
        }
        impl $crate::bindings::exports::ratecard::plugin::price::Guest for __RatecardPlugin {
            fn price(
                request: $crate::PriceRequest,
            ) -> $crate::Result<Vec<$crate::PricedLine>> {
                $crate::__price::<$price>(request)
            }
        }
        // Only in the component: native builds (unit tests) cannot link these export names.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_plugin_world!(
            __RatecardPlugin with_types_in $crate::bindings
        );
    };
}

/// A plugin instance's one accumulator (the contract's `metric`: an instance is an accumulator),
/// empty until `create`. Used by [`export_metric!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct __Slot<M>(std::cell::RefCell<Option<Accumulator<M>>>);

impl<M> __Slot<M> {
    pub const fn new() -> Self {
        __Slot(std::cell::RefCell::new(None))
    }
}

impl<M> Default for __Slot<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Metric> __Slot<M> {
    /// Starts the accumulator (over one `create` made before, if any).
    pub fn create(&self, config: &str) -> Result<()> {
        let accumulator = Accumulator::<M>::create(config)?;
        *self.0.borrow_mut() = Some(accumulator);
        Ok(())
    }

    pub fn reads(&self) -> EventFields {
        match &*self.0.borrow() {
            Some(accumulator) => accumulator.reads().into(),
            None => Reads::everything().into(),
        }
    }

    pub fn update(&self, batch: &[u8]) -> Result<()> {
        self.with(|accumulator| accumulator.update_batch(batch))
    }

    pub fn save(&self) -> Result<Vec<u8>> {
        self.with(Accumulator::save)
    }

    pub fn merge(&self, state: &[u8]) -> Result<()> {
        self.with(|accumulator| accumulator.merge(state))
    }

    pub fn finish(&self) -> Result<String> {
        self.with(Accumulator::finish)
    }

    fn with<T>(&self, f: impl FnOnce(&Accumulator<M>) -> Result<T>) -> Result<T> {
        match &*self.0.borrow() {
            Some(accumulator) => f(accumulator),
            None => Err(PluginError::Failed(
                "`create` was not called in this instance".into(),
            )),
        }
    }
}

/// What a price plugin's `metric` functions answer.
#[doc(hidden)]
pub fn __not_a_metric() -> PluginError {
    PluginError::Failed("this plugin is not a metric plugin".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Total {
        property: String,
        total: Decimal,
    }

    #[derive(serde::Deserialize)]
    struct Config {
        property: String,
    }

    impl Metric for Total {
        type Config = Config;
        fn new(config: Config) -> Result<Self> {
            Ok(Total {
                property: config.property,
                total: Decimal::ZERO,
            })
        }
        fn update(&mut self, events: &Events) -> Result<()> {
            for event in events {
                self.total += event.decimal(&self.property)?;
            }
            Ok(())
        }
        fn merge(&mut self, other: Self) -> Result<()> {
            self.total += other.total;
            Ok(())
        }
        fn finish(&self) -> Result<Decimal> {
            Ok(self.total)
        }
    }

    fn bytes(id: &str, value: Value<'static>) -> Event<'static> {
        event(id, 0, "x", &[("bytes", value), ("a", string("first"))])
    }

    fn update(a: &Accumulator<Total>, events: &[Event<'_>]) -> Result<()> {
        a.update_batch(Batch::new(events).as_bytes())
    }

    #[test]
    fn saved_state_merges_into_another_accumulator() {
        let a = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        let b = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        update(&a, &[bytes("1", num("1.25"))]).unwrap();
        update(&b, &[bytes("2", string("2.50")), bytes("3", num("0.25"))]).unwrap();
        a.merge(&b.save().unwrap()).unwrap();
        assert_eq!(a.finish().unwrap(), "4");
    }

    #[test]
    fn an_instance_holds_one_accumulator_from_create_on() {
        let slot = __Slot::<Total>::new();
        let not_created = PluginError::Failed("`create` was not called in this instance".into());
        assert_eq!(
            slot.update(Batch::new(&[]).as_bytes()),
            Err(not_created.clone())
        );
        assert_eq!(slot.save(), Err(not_created.clone()));
        assert_eq!(slot.merge(b"{}"), Err(not_created.clone()));
        assert_eq!(slot.finish(), Err(not_created));
        assert_eq!(slot.reads(), Reads::everything().into());

        // A refused config leaves the slot as it was.
        assert!(matches!(
            slot.create("{}"),
            Err(PluginError::InvalidConfig(_))
        ));
        assert!(slot.finish().is_err());
        slot.create(r#"{"property":"bytes"}"#).unwrap();
        slot.update(Batch::new(&[bytes("1", num("2.5"))]).as_bytes())
            .unwrap();
        assert_eq!(slot.finish().unwrap(), "2.5");
        // `create` again starts over.
        slot.create(r#"{"property":"bytes"}"#).unwrap();
        assert_eq!(slot.finish().unwrap(), "0");
    }

    #[test]
    fn bad_config_state_and_properties_are_typed_errors() {
        let error = Accumulator::<Total>::create("{}").unwrap_err();
        assert!(matches!(error, PluginError::InvalidConfig(_)), "{error:?}");
        let a = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        assert!(matches!(
            a.merge(b"not json"),
            Err(PluginError::InvalidState(_))
        ));
        // An event's error gives its place in the batch: the host names it by its id.
        let invalid = |index: u32, message: &str| {
            PluginError::InvalidEvent(EventError {
                index,
                message: message.into(),
            })
        };
        let error = update(
            &a,
            &[bytes("7", num("1")), bytes("8", Value::Boolean(true))],
        );
        assert_eq!(
            error.unwrap_err(),
            invalid(1, "property `bytes` is not a number")
        );
        let error = update(&a, &[event("8", 0, "x", &[])]).unwrap_err();
        assert_eq!(error, invalid(0, "no property `bytes`"));
        let error = update(&a, &[bytes("9", string("1.2.3"))]).unwrap_err();
        assert_eq!(
            error,
            invalid(0, "property `bytes` is not a number: `1.2.3`")
        );
    }

    #[test]
    fn properties_are_found_whatever_the_order_given() {
        let batch = Batch::new(&[
            event(
                "1",
                0,
                "x",
                &[("z", num("1")), ("b", string("s")), ("m", Value::Null)],
            ),
            event("2", 0, "x", &[("b", num("2"))]),
        ]);
        let events = batch.events();
        let (first, second) = (events.get(0).unwrap(), events.get(1).unwrap());
        // More names than the batch remembers, asked for in turn.
        for _ in 0..3 {
            assert_eq!(first.string("b").unwrap(), "s");
            assert_eq!(first.decimal("z").unwrap(), Decimal::ONE);
            assert_eq!(first.property("m"), Some(Value::Null));
            assert_eq!(first.property("x"), None);
            assert_eq!(first.property("nothing"), None);
            assert_eq!(second.decimal("b").unwrap(), Decimal::TWO);
            assert_eq!(second.property("z"), None);
        }
        assert_eq!(
            second.string("b").unwrap_err(),
            PluginError::InvalidEvent(EventError {
                index: 1,
                message: "property `b` is not a string".into()
            })
        );
        assert!(events.get(2).is_none());
        assert_eq!(format_decimal("1.500".parse().unwrap()), "1.5");
    }

    #[test]
    fn a_batch_reads_back_as_the_events_it_was_written_from() {
        let mut first = event(
            "é1",
            -5,
            "bw",
            &[
                ("mbps", num("-79228162514264337593543950335")),
                ("tiny", num("0.0000000000000000000000000001")),
                ("region", string("eu-west")),
                ("on", Value::Boolean(true)),
                ("nothing", Value::Null),
                ("nested", Value::Other),
            ],
        );
        first.customer = "cus_1".into();
        let events = [
            first,
            event("2", 7, "bw", &[("mbps", num("12.50"))]),
            event("3", 9, "other", &[]),
        ];
        let batch = Batch::new(&events);
        let read: Vec<Event> = batch.events().iter().map(|e| e.to_event()).collect();
        assert_eq!(read, events);
        let backwards: Vec<Event> = batch.events().iter().rev().map(|e| e.to_event()).collect();
        assert_eq!(backwards.len(), 3);
        assert_eq!(backwards[0], events[2]);
        let view = batch.events();
        let second = view.get(1).unwrap();
        assert_eq!(format_decimal(second.decimal("mbps").unwrap()), "12.5");
        assert_eq!(
            (
                second.id(),
                second.customer(),
                second.code(),
                second.timestamp_ms()
            ),
            ("2", "", "bw", 7)
        );
        assert_eq!(view.get(0).unwrap().customer(), "cus_1");
        assert!(Batch::new(&[]).events().is_empty());
    }

    #[test]
    fn a_batch_with_reads_holds_only_what_is_read() {
        let mut first = event(
            "1",
            5,
            "bw",
            &[
                ("mbps", num("1.5")),
                ("region", string("eu")),
                ("z", num("9")),
            ],
        );
        first.customer = "cus_1".into();
        let events = [first, event("2", 7, "bw", &[("region", string("us"))])];
        let everything = Batch::new(&events);
        let reads = Reads::timestamps().property("mbps").property("z");
        let projected = Batch::with_reads(&events, &reads);
        assert!(projected.as_bytes().len() < everything.as_bytes().len());
        let view = projected.events();
        let (first, second) = (view.get(0).unwrap(), view.get(1).unwrap());
        assert_eq!(
            (
                first.id(),
                first.customer(),
                first.code(),
                first.timestamp_ms()
            ),
            ("", "", "", 5)
        );
        let names: Vec<String> = first.properties().map(|p| p.name.into_owned()).collect();
        assert_eq!(names, ["mbps", "z"]);
        assert_eq!(first.decimal("mbps").unwrap(), "1.5".parse().unwrap());
        assert_eq!(first.property("region"), None);
        assert_eq!(second.properties().count(), 0);
        assert_eq!(
            view.decimals("mbps").nth(1).unwrap().unwrap_err(),
            second.invalid("no property `mbps`")
        );
        // Each part on its own reads back as written, and only it.
        for (reads, expected) in [
            (Reads::timestamps().ids(), ("1", "", "", 0)),
            (Reads::timestamps().customers(), ("", "cus_1", "", 0)),
            (
                Reads::timestamps().codes().all_properties(),
                ("", "", "bw", 3),
            ),
        ] {
            let batch = Batch::with_reads(&events, &reads);
            let first = batch.events().get(0).unwrap().to_event();
            let read = (
                &*first.id,
                &*first.customer,
                &*first.code,
                first.properties.len(),
            );
            assert_eq!(read, expected, "{reads:?}");
        }
        assert_eq!(
            Reads::from(EventFields::from(reads.clone())),
            reads,
            "reads cross the contract unchanged"
        );
    }

    /// The format's checks are `ratecard-plugin-wire`'s (tested there, case by case); here,
    /// that whatever they refuse reaches the plugin as `invalid-input` naming what is wrong,
    /// and a batch that is cut anywhere never panics.
    #[test]
    fn a_malformed_batch_is_invalid_input_not_a_panic() {
        let parse = |bytes: &[u8]| {
            let mut value_slots = Vec::new();
            Events::parse(bytes, &mut value_slots).map(|events| events.len())
        };
        let events = [event("1", 0, "x", &[("a", num("1")), ("b", string("s"))])];
        let good = Batch::new(&events);
        assert_eq!(parse(good.as_bytes()), Ok(1));
        let mut writer = ratecard_plugin_wire::BatchWriter::new(Reads::everything());
        writer.write(events.iter()).unwrap();
        let mut bad = writer.columns().clone();
        bad.codes[0] = 9;
        assert_eq!(
            parse(&bad.bytes()).unwrap_err(),
            PluginError::InvalidInput("malformed event batch: a name index is out of range".into())
        );
        let bytes = good.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut]).unwrap_err(),
                PluginError::InvalidInput(
                    "malformed event batch: the buffer is shorter than its counts".into()
                )
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            parse(&longer).unwrap_err(),
            PluginError::InvalidInput("malformed event batch: bytes are left over".into())
        );
    }
}
