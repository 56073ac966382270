//! A plugin that attacks its host, chosen by its config: `{"attack": "loop"}`. With
//! `{"attack": "none"}` it is a well-behaved event counter.

use std::hint::black_box;

use ratecard_plugin::{Decimal, Events, Metric, PluginError, Result, log};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct Config {
    pub attack: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Hostile {
    attack: String,
    count: u64,
    ballast: Vec<u8>,
}

impl Metric for Hostile {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Hostile {
            attack: config.attack,
            count: 0,
            ballast: Vec::new(),
        })
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        self.count += events.len() as u64;
        match self.attack.as_str() {
            "none" => {}
            "loop" => loop {
                black_box(&mut self.count);
            },
            "memory" => loop {
                // 8 MiB at a time, never touched: memory.grow as fast as the guest can ask.
                std::mem::forget(black_box(Vec::<u8>::with_capacity(8 << 20)));
            },
            "table" => table_grow_bomb()?,
            "recursion" => {
                self.count = recurse(black_box(u64::MAX));
            }
            "panic" => panic!("the plugin panicked on purpose"),
            "output" => self.ballast = vec![7; 4 << 20],
            "log" => {
                for i in 0..1_000 {
                    log::info(&format!("log line {i}"));
                }
            }
            "error" => return Err(PluginError::InvalidInput("refused on purpose".into())),
            other => {
                return Err(PluginError::InvalidConfig(format!(
                    "unknown attack `{other}`"
                )));
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        self.count += other.count;
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        Ok(Decimal::from(self.count))
    }
}

/// Elements asked for per `table.grow` by the `table` attack. The build script finds this
/// constant in front of a `memory.grow` and turns that instruction into a `table.grow` of the
/// function table (safe Rust cannot write `table.grow`): see `TABLE_GROW` in
/// `crates/test-plugins/build.rs`. In the plain hostile plugin it is a memory bomb.
pub const TABLE_GROW_MARK: usize = 4_099;

/// Grows the function table as fast as the guest can ask, until the host stops it.
#[cfg(target_arch = "wasm32")]
fn table_grow_bomb() -> Result<()> {
    loop {
        black_box(core::arch::wasm32::memory_grow(0, TABLE_GROW_MARK));
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn table_grow_bomb() -> Result<()> {
    Err(PluginError::Failed("the table attack needs wasm".into()))
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth - 1))).wrapping_add(1)
}

ratecard_plugin::export_metric!(Hostile);
