//! Ratecard's server-side host: the sandboxed plugin runtime and what the `ratecard` binary
//! needs beyond the pure engine. Rating (`rating`) does not need the plugin runtime: without
//! the default `plugins` feature the crate builds without wasmtime.
#![forbid(unsafe_code)]

#[cfg(feature = "plugins")]
pub mod plugins;
pub mod rating;
#[cfg(feature = "server")]
pub mod server;
pub mod table;
