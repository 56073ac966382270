//! The WebAssembly plugin runtime: customer pricing plugins (custom metrics and custom prices)
//! run as components in wasmtime, sandboxed.
//!
//! - [`PluginRuntime`]: one wasmtime engine (Cranelift, component model, fuel, epoch
//!   interruption, pooling allocator, optional on-disk cache of compiled artifacts) and a linker
//!   offering plugins exactly one import, `ratecard:plugin/log`.
//! - [`LoadedPlugin`]: a component validated at load (size, shape, imports, exports, a dry-run
//!   `describe`), compiled and pre-instantiated (`InstancePre`).
//! - [`PluginMetric`]: an accumulator in a `Store` of its own while live, its saved state while
//!   parked (see `runtime::Gate`); [`LoadedPlugin::price`] prices in
//!   a fresh `Store` per call. Stores are never shared between calls of different aggregations,
//!   customers or plugins.
//! - [`PluginRegistry`]: plugins by `name@version`, pinned by sha256; implements the engine's
//!   `PluginHost`, so plans can say `"plugin": "p95-bandwidth@1.0.0"`.
//!
//! Architecture Invariant: a guest can only make a call fail. Every trap and limit hit becomes a
//! typed `PluginError` naming the [`Limit`]; the store that trapped is never called again; the
//! host process and other plugins keep running.
//!
//! Architecture Invariant: plugins import nothing but `log`: no WASI, no clock, no randomness, so
//! the same plugin on the same input gives the bit-identical result and uses identical fuel.

pub mod bindings {
    //! Host bindings of contract `ratecard:plugin@0.1.0` (`crates/plugin-sdk/wit`). A later
    //! contract gets its own module (`bindings_v0_2`) beside this one.
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../crates/plugin-sdk/wit",
    });
}

pub mod convert;
pub mod error;
pub mod limits;
mod metric_funcs;
pub mod registry;
pub mod runtime;
mod validate;

pub use convert::Metadata;
pub use error::LoadError;
pub use limits::{Limit, Limits};
pub use registry::{Manifest, ManifestEntry, PluginRegistry};
pub use runtime::{
    LoadedPlugin, LogLine, PluginMetric, PluginRuntime, RuntimeConfig, Session, Stats, sha256_hex,
};

/// The price request of a plugin's dry run (`ratecard plugin check`, the server's upload
/// check): one month, no quantities, `config` as given.
pub fn dry_run_request(config: serde_json::Value) -> ratecard_engine::plugin::PriceRequest {
    ratecard_engine::plugin::PriceRequest {
        plan_id: "dry-run".into(),
        charge_id: "dry-run".into(),
        currency: "USD".into(),
        config,
        customer_id: "dry-run".into(),
        customer_attributes: serde_json::Map::new(),
        period_start: "2026-01-01T00:00:00Z".into(),
        period_end: "2026-02-01T00:00:00Z".into(),
        quantities: Vec::new(),
    }
}
