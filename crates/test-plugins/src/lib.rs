//! Plugins for the host's tests and benches, built by `build.rs`: the example plugins of
//! `examples/plugins/` and the hostile guests of `guests/`, compiled for `wasm32-unknown-unknown`
//! and turned into components in-process with `wit-component`. Each constant is the path of a
//! component file; no `.wasm` file is committed.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
