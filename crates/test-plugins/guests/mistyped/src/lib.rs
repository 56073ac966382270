//! A component whose exports have the contract's names, with `metric.update` of the wrong type
//! (`u32 -> u32` instead of `event-batch -> result`): the host must name that function.

wit_bindgen::generate!({
    inline: "
        package ratecard:plugin@0.1.0;

        interface types {
            record event-error { index: u32, message: string }
            variant plugin-error {
                invalid-config(string),
                invalid-input(string),
                invalid-event(event-error),
                invalid-state(string),
                failed(string),
            }
            record event-fields {
                ids: bool,
                customers: bool,
                codes: bool,
                properties: option<list<string>>,
            }
        }
        interface meta {
            describe: func() -> u32;
        }
        interface metric {
            use types.{event-fields, plugin-error};
            create: func(config: string) -> result<_, plugin-error>;
            reads: func() -> event-fields;
            update: func(events: u32) -> u32;
            save: func() -> result<list<u8>, plugin-error>;
            merge: func(state: list<u8>) -> result<_, plugin-error>;
            finish: func() -> result<string, plugin-error>;
        }
        interface price {
            price: func() -> u32;
        }
        world plugin {
            export meta;
            export metric;
            export price;
        }
    ",
    world: "plugin",
});

use exports::ratecard::plugin::{meta, metric, price};
use ratecard::plugin::types::{EventFields, PluginError};

#[derive(Debug)]
pub struct Mistyped;

impl meta::Guest for Mistyped {
    fn describe() -> u32 {
        0
    }
}

impl metric::Guest for Mistyped {
    fn create(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
    fn reads() -> EventFields {
        EventFields {
            ids: false,
            customers: false,
            codes: false,
            properties: None,
        }
    }
    fn update(events: u32) -> u32 {
        events
    }
    fn save() -> Result<Vec<u8>, PluginError> {
        Ok(Vec::new())
    }
    fn merge(_state: Vec<u8>) -> Result<(), PluginError> {
        Ok(())
    }
    fn finish() -> Result<String, PluginError> {
        Ok("0".into())
    }
}

impl price::Guest for Mistyped {
    fn price() -> u32 {
        0
    }
}

#[cfg(target_arch = "wasm32")]
export!(Mistyped);
