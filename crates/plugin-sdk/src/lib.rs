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
//! use ratecard_plugin::{Decimal, Event, EventExt, Metric, Result};
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
//!     fn update(&mut self, events: &[Event]) -> Result<()> {
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
//! # State
//!
//! The host keeps one accumulator alive per aggregation (a WIT resource in one store), so `update`
//! never re-reads state. `save` serializes the accumulator with `serde_json` so partial aggregates
//! survive a restart and merge across workers; `merge` reads another partial's saved state and
//! calls [`Metric::merge`]. `merge` must be commutative and associative: the host merges partials
//! in any order.

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
    BreakdownRow, GroupQuantity, Metadata, PluginError, PluginKind, PriceRequest, PricedLine,
};

use std::borrow::Cow;

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
    fn update(&mut self, events: &[Event<'_>]) -> Result<()>;
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

/// A property value of a usage event.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    /// A JSON number, exact.
    Num(Decimal),
    Boolean(bool),
    Null,
    /// An array or object (not passed on), or a number out of range.
    Other,
}

impl Value<'_> {
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Str(text) => Value::Str(Cow::Owned(text.into_owned())),
            Value::Num(n) => Value::Num(n),
            Value::Boolean(b) => Value::Boolean(b),
            Value::Null => Value::Null,
            Value::Other => Value::Other,
        }
    }
}

/// A named property of a usage event.
#[derive(Clone, Debug, PartialEq)]
pub struct Property<'a> {
    pub name: Cow<'a, str>,
    pub value: Value<'a>,
}

/// A raw usage event. In a plugin, every field borrows from the batch the host passed in (no
/// allocation per event); [`event`] builds owned ones for native tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub customer: Cow<'a, str>,
    /// Unix milliseconds, UTC.
    pub timestamp_ms: i64,
    pub code: Cow<'a, str>,
    /// Sorted by name, names unique.
    pub properties: Cow<'a, [Property<'a>]>,
}

/// Convenient access to an event's properties.
pub trait EventExt {
    fn property(&self, name: &str) -> Option<&Value<'_>>;
    /// A numeric property (a JSON number or a string holding a decimal).
    fn decimal(&self, name: &str) -> Result<Decimal>;
    /// A string property.
    fn string(&self, name: &str) -> Result<&str>;
}

impl EventExt for Event<'_> {
    fn property(&self, name: &str) -> Option<&Value<'_>> {
        self.properties
            .binary_search_by(|p| p.name.as_ref().cmp(name))
            .ok()
            .map(|i| &self.properties[i].value)
    }

    fn decimal(&self, name: &str) -> Result<Decimal> {
        match self.property(name) {
            Some(Value::Num(n)) => Ok(*n),
            Some(Value::Str(text)) => parse_decimal(text).map_err(|_| {
                PluginError::InvalidInput(format!(
                    "event `{}`: property `{name}` is not a number: `{text}`",
                    self.id
                ))
            }),
            Some(_) => Err(PluginError::InvalidInput(format!(
                "event `{}`: property `{name}` is not a number",
                self.id
            ))),
            None => Err(PluginError::InvalidInput(format!(
                "event `{}` has no property `{name}`",
                self.id
            ))),
        }
    }

    fn string(&self, name: &str) -> Result<&str> {
        match self.property(name) {
            Some(Value::Str(text)) => Ok(text),
            Some(_) => Err(PluginError::InvalidInput(format!(
                "event `{}`: property `{name}` is not a string",
                self.id
            ))),
            None => Err(PluginError::InvalidInput(format!(
                "event `{}` has no property `{name}`",
                self.id
            ))),
        }
    }
}

/// Builds events in native unit tests of plugins.
pub fn event(
    id: &str,
    timestamp_ms: i64,
    code: &str,
    properties: &[(&str, Value<'_>)],
) -> Event<'static> {
    let mut properties: Vec<Property<'static>> = properties
        .iter()
        .map(|(name, value)| Property {
            name: Cow::Owned((*name).to_owned()),
            value: value.clone().into_owned(),
        })
        .collect();
    properties.sort_by(|a, b| a.name.cmp(&b.name));
    Event {
        id: Cow::Owned(id.to_owned()),
        customer: Cow::Borrowed(""),
        timestamp_ms,
        code: Cow::Owned(code.to_owned()),
        properties: Cow::Owned(properties),
    }
}

/// A numeric property value, for tests. Panics if `text` is not a decimal.
pub fn num(text: &str) -> Value<'static> {
    match text.parse::<Decimal>() {
        Ok(n) => Value::Num(n),
        Err(e) => panic!("`{text}` is not a decimal: {e}"),
    }
}

/// A string property value.
pub fn string(text: &str) -> Value<'static> {
    Value::Str(Cow::Owned(text.to_owned()))
}

/// The kinds of property values in an `event-batch` (see `wit/plugin.wit`).
#[doc(hidden)]
pub mod kind {
    pub const STR: u8 = 0;
    pub const NUM: u8 = 1;
    pub const NEG_NUM: u8 = 2;
    pub const FALSE: u8 = 3;
    pub const TRUE: u8 = 4;
    pub const NULL: u8 = 5;
    pub const OTHER: u8 = 6;
}

fn malformed(what: &str) -> PluginError {
    PluginError::InvalidInput(format!("malformed event batch: {what}"))
}

/// The next item of a text column: `text[*start .. end]`, on character boundaries.
fn item<'a>(text: &'a str, start: &mut usize, end: u32) -> Result<&'a str> {
    let end = end as usize;
    let item = text
        .get(*start..end)
        .ok_or_else(|| malformed("a text item is out of its column"))?;
    *start = end;
    Ok(item)
}

/// Reads the columns of an `event-batch` one after the other.
struct Columns<'a> {
    bytes: &'a [u8],
}

impl<'a> Columns<'a> {
    fn take(&mut self, n: usize, width: usize) -> Result<&'a [u8]> {
        let len = n
            .checked_mul(width)
            .filter(|len| *len <= self.bytes.len())
            .ok_or_else(|| malformed("the buffer is shorter than its counts"))?;
        let (column, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(column)
    }

    fn u32s(&mut self, n: usize) -> Result<impl ExactSizeIterator<Item = u32> + Clone + 'a> {
        Ok(self
            .take(n, 4)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    fn u64s(&mut self, n: usize) -> Result<&'a [u8]> {
        self.take(n, 8)
    }

    fn text(&mut self, n: usize) -> Result<&'a str> {
        std::str::from_utf8(self.take(n, 1)?).map_err(|_| malformed("text is not UTF-8"))
    }
}

fn u64_at(column: &[u8], i: usize) -> Option<u64> {
    let b = column.get(i * 8..i * 8 + 8)?;
    Some(u64::from_le_bytes([
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
    ]))
}

fn u32_at(column: &[u8], i: usize) -> Option<u32> {
    let b = column.get(i * 4..i * 4 + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Views an `event-batch` of the contract as [`Event`]s borrowing from it, and hands them to
/// `f`. Costs three allocations per batch (names, properties, events), none per event.
fn with_events<R>(batch: &[u8], f: impl FnOnce(&[Event<'_>]) -> Result<R>) -> Result<R> {
    let mut columns = Columns { bytes: batch };
    let mut counts = [0usize; 8];
    for (count, n) in counts.iter_mut().zip(columns.u32s(8)?) {
        *count = n as usize;
    }
    let [
        n_events,
        n_properties,
        n_names,
        n_strings,
        n_numbers,
        names_bytes,
        ids_bytes,
        strings_bytes,
    ] = counts;
    let timestamps_ms = columns.u64s(n_events)?;
    let number_los = columns.u64s(n_numbers)?;
    let number_his = columns.take(n_numbers, 4)?;
    let name_ends = columns.u32s(n_names)?;
    let id_ends = columns.u32s(n_events)?;
    let customers = columns.u32s(n_events)?;
    let codes = columns.u32s(n_events)?;
    let property_ends = columns.u32s(n_events)?;
    let property_names = columns.u32s(n_properties)?;
    let mut string_ends = columns.u32s(n_strings)?;
    let property_kinds = columns.take(n_properties, 1)?;
    let number_scales = columns.take(n_numbers, 1)?;
    let names_text = columns.text(names_bytes)?;
    let ids = columns.text(ids_bytes)?;
    let strings = columns.text(strings_bytes)?;
    if !columns.bytes.is_empty() {
        return Err(malformed("bytes are left over"));
    }

    let mut start = 0;
    let names = name_ends
        .map(|end| item(names_text, &mut start, end))
        .collect::<Result<Vec<&str>>>()?;
    let name = |i: u32| {
        names
            .get(i as usize)
            .map(|name| Cow::Borrowed(*name))
            .ok_or_else(|| malformed("a name index is out of range"))
    };
    let mut string_start = 0;
    let mut n_numbers_read = 0;
    let properties = property_names
        .zip(property_kinds)
        .map(|(name_index, value_kind)| {
            let value = match *value_kind {
                kind::STR => {
                    let end = string_ends
                        .next()
                        .ok_or_else(|| malformed("a string property has no string"))?;
                    Value::Str(Cow::Borrowed(item(strings, &mut string_start, end)?))
                }
                kind::NUM | kind::NEG_NUM => {
                    let k = n_numbers_read;
                    n_numbers_read += 1;
                    let (Some(lo), Some(hi), Some(scale)) = (
                        u64_at(number_los, k),
                        u32_at(number_his, k),
                        number_scales.get(k),
                    ) else {
                        return Err(malformed("a number property has no number"));
                    };
                    if *scale > 28 {
                        return Err(malformed("a number is out of range"));
                    }
                    let negative = *value_kind == kind::NEG_NUM;
                    Value::Num(Decimal::from_parts(
                        lo as u32,
                        (lo >> 32) as u32,
                        hi,
                        negative,
                        (*scale).into(),
                    ))
                }
                kind::FALSE => Value::Boolean(false),
                kind::TRUE => Value::Boolean(true),
                kind::NULL => Value::Null,
                kind::OTHER => Value::Other,
                _ => return Err(malformed("unknown property kind")),
            };
            Ok(Property {
                name: name(name_index)?,
                value,
            })
        })
        .collect::<Result<Vec<Property<'_>>>>()?;
    if string_ends.next().is_some() || n_numbers_read != n_numbers {
        return Err(malformed("values are left over"));
    }
    let (mut id_start, mut property_start) = (0, 0);
    let events = id_ends
        .zip(customers)
        .zip(timestamps_ms.chunks_exact(8))
        .zip(codes)
        .zip(property_ends)
        .map(
            |((((id_end, customer), timestamp_ms), code), property_end)| {
                let property_end = property_end as usize;
                let properties = properties
                    .get(property_start..property_end)
                    .ok_or_else(|| malformed("a property range is out of the batch"))?;
                property_start = property_end;
                let t = timestamp_ms;
                Ok(Event {
                    id: Cow::Borrowed(item(ids, &mut id_start, id_end)?),
                    customer: name(customer)?,
                    timestamp_ms: i64::from_le_bytes([
                        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7],
                    ]),
                    code: name(code)?,
                    properties: Cow::Borrowed(properties),
                })
            },
        )
        .collect::<Result<Vec<Event<'_>>>>()?;
    if property_start != properties.len() {
        return Err(malformed("properties are left over"));
    }
    f(&events)
}

/// Log a message through the host (which may drop it). Only works inside a component.
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

/// The resource the host sees for a [`Metric`]. Used by [`export_metric!`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Accumulator<M> {
    state: std::cell::RefCell<M>,
}

impl<M: Metric> Accumulator<M> {
    pub fn create(config: &str) -> Result<Self> {
        let config = parse_config::<M::Config>(config)?;
        Ok(Accumulator {
            state: std::cell::RefCell::new(M::new(config)?),
        })
    }

    pub fn update(&self, events: &[Event<'_>]) -> Result<()> {
        self.state.borrow_mut().update(events)
    }

    /// `update` with a batch of the contract (`event-batch`).
    pub fn update_batch(&self, batch: &[u8]) -> Result<()> {
        with_events(batch, |events| self.update(events))
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

#[doc(hidden)]
#[macro_export]
macro_rules! __export_metric_impl {
    ($plugin:ident, $metric:ty) => {
        impl $crate::bindings::exports::ratecard::plugin::metric::Guest for $plugin {
            type Accumulator = $crate::__MetricResource<$metric>;
        }
    };
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
        $crate::__export_metric_impl!(__RatecardPlugin, $metric);
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
            type Accumulator = $crate::__NoMetric;
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

use bindings::exports::ratecard::plugin::metric::{
    Accumulator as AccumulatorHandle, GuestAccumulator,
};

/// The WIT resource wrapping an [`Accumulator`].
#[doc(hidden)]
#[derive(Debug)]
pub struct __MetricResource<M>(Accumulator<M>);

impl<M: Metric> GuestAccumulator for __MetricResource<M> {
    fn create(config: String) -> Result<AccumulatorHandle> {
        Ok(AccumulatorHandle::new(__MetricResource(
            Accumulator::<M>::create(&config)?,
        )))
    }
    fn update(&self, events: Vec<u8>) -> Result<()> {
        self.0.update_batch(&events)
    }
    fn save(&self) -> Result<Vec<u8>> {
        self.0.save()
    }
    fn merge(&self, state: Vec<u8>) -> Result<()> {
        self.0.merge(&state)
    }
    fn finish(&self) -> Result<String> {
        self.0.finish()
    }
}

/// The accumulator of a plugin that is not a metric: refuses to be created.
#[doc(hidden)]
#[derive(Debug)]
pub struct __NoMetric;

impl GuestAccumulator for __NoMetric {
    fn create(_config: String) -> Result<AccumulatorHandle> {
        Err(PluginError::Failed(
            "this plugin is not a metric plugin".into(),
        ))
    }
    fn update(&self, _events: Vec<u8>) -> Result<()> {
        unreachable_state()
    }
    fn save(&self) -> Result<Vec<u8>> {
        unreachable_state()
    }
    fn merge(&self, _state: Vec<u8>) -> Result<()> {
        unreachable_state()
    }
    fn finish(&self) -> Result<String> {
        unreachable_state()
    }
}

fn unreachable_state<T>() -> Result<T> {
    Err(PluginError::Failed(
        "this plugin is not a metric plugin".into(),
    ))
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
        fn update(&mut self, events: &[Event]) -> Result<()> {
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

    #[test]
    fn saved_state_merges_into_another_accumulator() {
        let a = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        let b = Accumulator::<Total>::create(r#"{"property":"bytes"}"#).unwrap();
        a.update(&[bytes("1", num("1.25"))]).unwrap();
        b.update(&[bytes("2", string("2.50")), bytes("3", num("0.25"))])
            .unwrap();
        a.merge(&b.save().unwrap()).unwrap();
        assert_eq!(a.finish().unwrap(), "4");
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
        let error = a.update(&[bytes("7", Value::Boolean(true))]).unwrap_err();
        assert_eq!(
            error,
            PluginError::InvalidInput("event `7`: property `bytes` is not a number".into())
        );
        let error = a.update(&[event("8", 0, "x", &[])]).unwrap_err();
        assert_eq!(
            error,
            PluginError::InvalidInput("event `8` has no property `bytes`".into())
        );
    }

    #[test]
    fn properties_are_found_whatever_the_order_given() {
        let e = event(
            "1",
            0,
            "x",
            &[("z", num("1")), ("b", string("s")), ("m", Value::Null)],
        );
        assert_eq!(e.string("b").unwrap(), "s");
        assert_eq!(e.decimal("z").unwrap(), Decimal::ONE);
        assert_eq!(e.property("m"), Some(&Value::Null));
        assert_eq!(format_decimal("1.500".parse().unwrap()), "1.5");
    }

    /// The columns of an `event-batch`, as a host writes them.
    #[derive(Clone, Default)]
    struct Batch {
        names: String,
        name_ends: Vec<u32>,
        ids: String,
        id_ends: Vec<u32>,
        customers: Vec<u32>,
        timestamps_ms: Vec<i64>,
        codes: Vec<u32>,
        property_ends: Vec<u32>,
        property_names: Vec<u32>,
        property_kinds: Vec<u8>,
        strings: String,
        string_ends: Vec<u32>,
        number_los: Vec<u64>,
        number_his: Vec<u32>,
        number_scales: Vec<u8>,
    }

    impl Batch {
        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            let u32s = |out: &mut Vec<u8>, column: &[u32]| {
                column
                    .iter()
                    .for_each(|n| out.extend_from_slice(&n.to_le_bytes()))
            };
            u32s(
                &mut out,
                &[
                    self.id_ends.len() as u32,
                    self.property_names.len() as u32,
                    self.name_ends.len() as u32,
                    self.string_ends.len() as u32,
                    self.number_los.len() as u32,
                    self.names.len() as u32,
                    self.ids.len() as u32,
                    self.strings.len() as u32,
                ],
            );
            self.timestamps_ms
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
            self.number_los
                .iter()
                .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
            for column in [
                &self.number_his,
                &self.name_ends,
                &self.id_ends,
                &self.customers,
                &self.codes,
                &self.property_ends,
                &self.property_names,
                &self.string_ends,
            ] {
                u32s(&mut out, column);
            }
            out.extend_from_slice(&self.property_kinds);
            out.extend_from_slice(&self.number_scales);
            out.extend_from_slice(self.names.as_bytes());
            out.extend_from_slice(self.ids.as_bytes());
            out.extend_from_slice(self.strings.as_bytes());
            out
        }
    }

    /// Writes events the way a host does: names once, text and numbers in columns.
    fn batch(events: &[Event<'_>]) -> Batch {
        let mut b = Batch::default();
        let mut names: Vec<String> = Vec::new();
        let mut name = |b: &mut Batch, s: &str| match names.iter().position(|n| n == s) {
            Some(i) => i as u32,
            None => {
                names.push(s.to_owned());
                b.names.push_str(s);
                b.name_ends.push(b.names.len() as u32);
                (names.len() - 1) as u32
            }
        };
        for e in events {
            for p in e.properties.iter() {
                let value_kind = match &p.value {
                    Value::Str(s) => {
                        b.strings.push_str(s);
                        b.string_ends.push(b.strings.len() as u32);
                        kind::STR
                    }
                    Value::Num(n) => {
                        let m = n.mantissa().unsigned_abs();
                        b.number_los.push(m as u64);
                        b.number_his.push((m >> 64) as u32);
                        b.number_scales.push(n.scale() as u8);
                        if n.is_sign_negative() {
                            kind::NEG_NUM
                        } else {
                            kind::NUM
                        }
                    }
                    Value::Boolean(false) => kind::FALSE,
                    Value::Boolean(true) => kind::TRUE,
                    Value::Null => kind::NULL,
                    Value::Other => kind::OTHER,
                };
                let i = name(&mut b, &p.name);
                b.property_names.push(i);
                b.property_kinds.push(value_kind);
            }
            b.ids.push_str(&e.id);
            b.id_ends.push(b.ids.len() as u32);
            let (customer, code) = (name(&mut b, &e.customer), name(&mut b, &e.code));
            b.customers.push(customer);
            b.codes.push(code);
            b.timestamps_ms.push(e.timestamp_ms);
            b.property_ends.push(b.property_names.len() as u32);
        }
        b
    }

    #[test]
    fn a_batch_reads_back_as_the_events_it_was_written_from() {
        let events = [
            event(
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
            ),
            event("2", 7, "bw", &[("mbps", num("12.50"))]),
            event("3", 9, "other", &[]),
        ];
        let seen = std::cell::RefCell::new(Vec::new());
        with_events(&batch(&events).bytes(), |read| {
            seen.borrow_mut()
                .extend(read.iter().map(|e| format!("{e:?}")));
            Ok(())
        })
        .unwrap();
        let expected: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(seen.into_inner(), expected);
        assert_eq!(
            format_decimal(match events[1].property("mbps") {
                Some(Value::Num(n)) => *n,
                other => panic!("{other:?}"),
            }),
            "12.5"
        );
    }

    #[test]
    fn a_malformed_batch_is_invalid_input_not_a_panic() {
        let good = batch(&[event("1", 0, "x", &[("a", num("1")), ("b", string("s"))])]);
        let check = |batch: Batch, what: &str| {
            let error = with_events(&batch.bytes(), |_| Ok(())).unwrap_err();
            assert_eq!(
                error,
                PluginError::InvalidInput(format!("malformed event batch: {what}"))
            );
        };
        let mut bad = good.clone();
        bad.id_ends[0] = 1_000;
        check(bad, "a text item is out of its column");
        let mut bad = good.clone();
        bad.codes[0] = 9;
        check(bad, "a name index is out of range");
        let mut bad = good.clone();
        bad.property_ends[0] = 3;
        check(bad, "a property range is out of the batch");
        let mut bad = good.clone();
        bad.property_ends[0] = 1;
        check(bad, "properties are left over");
        let mut bad = good.clone();
        bad.number_scales[0] = 29;
        check(bad, "a number is out of range");
        let mut bad = good.clone();
        bad.property_kinds[0] = 7;
        check(bad, "unknown property kind");
        let mut bad = good.clone();
        bad.property_kinds[1] = kind::NULL;
        check(bad, "values are left over");
        let mut bad = good.clone();
        bad.property_kinds[1] = kind::NUM;
        check(bad, "a number property has no number");
        let mut bad = good.clone();
        bad.ids = "é".to_owned();
        bad.id_ends[0] = 1;
        check(bad, "a text item is out of its column");
        let mut bad = good.clone();
        bad.ids = "\u{ff}".to_owned();
        let mut bytes = bad.bytes();
        let at = bytes.len() - 1 - bad.strings.len();
        bytes[at - 1] = 0xff;
        assert_eq!(
            with_events(&bytes, |_| Ok(())).unwrap_err(),
            PluginError::InvalidInput("malformed event batch: text is not UTF-8".into())
        );
        let bytes = good.bytes();
        for (cut, what) in [
            (bytes.len() - 1, "the buffer is shorter than its counts"),
            (3, "the buffer is shorter than its counts"),
        ] {
            assert_eq!(
                with_events(&bytes[..cut], |_| Ok(())).unwrap_err(),
                PluginError::InvalidInput(format!("malformed event batch: {what}"))
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert_eq!(
            with_events(&longer, |_| Ok(())).unwrap_err(),
            PluginError::InvalidInput("malformed event batch: bytes are left over".into())
        );
    }
}
