//! Ratecard's server-side host: the sandboxed plugin runtime and what the `ratecard` binary
//! needs beyond the pure engine.
#![forbid(unsafe_code)]

pub mod plugins;
pub mod rating;
pub mod table;
