//! Ratecard's rating engine.
//!
//! Pure: it does no I/O, reads no clock, environment or randomness, and compiles unchanged for
//! `wasm32-unknown-unknown`. Time enters as data (a period, a timezone name); money is exact
//! ([`rust_decimal::Decimal`], never `f64`) and crosses every boundary as a decimal string.
#![forbid(unsafe_code)]

pub mod decimal;
pub mod error;
pub mod estimate;
pub mod import;
pub mod invoice;
pub mod json;
pub mod meter;
pub mod money;
pub mod period;
pub mod plan;
pub mod plugin;
pub mod price;
pub mod rate;
pub mod rater;
mod sort;
pub mod usage;
pub mod validate;

pub use rust_decimal::Decimal;
