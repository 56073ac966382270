//! A plugin that also imports a WASI interface (`wasi:random/random@0.2.0`): the host must refuse
//! to load it, since plugins have no capability surface.

use ratecard_plugin::{Decimal, Events, Metric, Result};
use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    inline: "
        package wasi:random@0.2.0;
        interface random {
            get-random-u64: func() -> u64;
        }
        world imports {
            import random;
        }
    ",
    world: "imports",
});

#[derive(Debug, Serialize, Deserialize)]
pub struct Random {
    total: u64,
}

impl Metric for Random {
    type Config = Option<()>;

    fn new(_config: Option<()>) -> Result<Self> {
        Ok(Random { total: 0 })
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        for _ in events {
            #[cfg(target_arch = "wasm32")]
            {
                self.total = self
                    .total
                    .wrapping_add(wasi::random::random::get_random_u64() % 2);
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        self.total += other.total;
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        Ok(Decimal::from(self.total))
    }
}

ratecard_plugin::export_metric!(Random);
