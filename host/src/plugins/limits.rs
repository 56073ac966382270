//! Sandbox limits: every one is configurable, every default is safe, and every hit is reported
//! as a typed error naming the [`Limit`].

use std::fmt;
use std::time::Duration;

/// The limits a plugin runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (≈ wasm instructions) for any call, before the per-event allowance.
    pub fuel_per_call: u64,
    /// Extra fuel per event passed to `update` (and per event held, for `save` and `finish`).
    pub fuel_per_event: u64,
    /// Wall time of one call, enforced with epoch interruption.
    pub wall_time: Duration,
    /// Linear memory of one store, in bytes.
    pub memory_bytes: usize,
    /// Elements of any table.
    pub table_elements: usize,
    /// Core instances, tables and memories of one store.
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// The wasm stack, in bytes.
    pub wasm_stack_bytes: usize,
    /// Size of a component at load, in bytes.
    pub component_bytes: usize,
    /// Size of one call's output (a decimal, saved state, priced lines), in bytes.
    pub output_bytes: usize,
    /// Log messages kept per store (later ones are counted and dropped), and bytes per message.
    pub log_messages: usize,
    pub log_message_bytes: usize,
    /// Saved state of all open accumulators of a runtime together, in bytes: what thousands of
    /// customers' metrics hold between batches, bounded as a whole, not only per instance.
    pub total_state_bytes: usize,
    /// Linear memory of the instances kept live between calls (so the next batch needs no
    /// restore), all together. Past it, an accumulator is saved and its instance dropped.
    pub idle_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 10_000_000,
            fuel_per_event: 20_000,
            wall_time: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            table_elements: 10_000,
            instances: 8,
            tables: 4,
            memories: 2,
            wasm_stack_bytes: 512 << 10,
            component_bytes: 8 << 20,
            output_bytes: 1 << 20,
            log_messages: 100,
            log_message_bytes: 1024,
            total_state_bytes: 1 << 30,
            idle_memory_bytes: 256 << 20,
        }
    }
}

/// The granularity of wall-time limits.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

impl Limits {
    pub(crate) fn epoch_ticks(&self) -> u64 {
        (self.wall_time.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64
    }
}

/// A sandbox limit, as named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// `fuel_per_call` + `fuel_per_event` × events.
    Fuel,
    /// `wall_time`.
    WallTime,
    /// `memory_bytes`.
    Memory,
    /// `table_elements`.
    TableElements,
    /// `instances`, `tables` or `memories`.
    Instances,
    /// `wasm_stack_bytes`.
    Stack,
    /// `component_bytes`.
    ComponentSize,
    /// `output_bytes`.
    OutputSize,
    /// `total_state_bytes`.
    TotalState,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::WallTime => "wall-time",
            Limit::Memory => "memory",
            Limit::TableElements => "table-elements",
            Limit::Instances => "instances",
            Limit::Stack => "stack",
            Limit::ComponentSize => "component-size",
            Limit::OutputSize => "output-size",
            Limit::TotalState => "total-state",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
