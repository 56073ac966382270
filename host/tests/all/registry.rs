//! Plugins by reference, pinned by hash, through the engine's `PluginHost`.

use ratecard_engine::Decimal;
use ratecard_engine::plugin::{PluginError, PluginHost};
use ratecard_host::plugins::{LoadError, PluginRegistry};
use ratecard_test_plugins as guests;
use serde_json::json;

use crate::{event, runtime};

fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn plans_reach_plugins_by_name_and_version() {
    let mut registry = PluginRegistry::new(runtime().clone());
    let sha = registry
        .add("p95-bandwidth@1.0.0", &bytes(guests::P95_BANDWIDTH), None)
        .unwrap();
    assert_eq!(sha.len(), 64);
    let host: &dyn PluginHost = &registry;
    let mut metric = host
        .metric("p95-bandwidth@1.0.0", &json!({ "property": "rate" }))
        .unwrap();
    metric
        .update(&[event(1, 0, "bw", &[("rate", Decimal::from(3))], &[])])
        .unwrap();
    assert_eq!(metric.finish().unwrap(), Decimal::from(3));
    let Err(error) = host.metric("p95-bandwidth@2.0.0", &json!({})) else {
        panic!("found")
    };
    assert_eq!(error, PluginError::NotFound("p95-bandwidth@2.0.0".into()));
}

#[test]
fn a_pinned_hash_must_match() {
    let mut registry = PluginRegistry::new(runtime().clone());
    let error = registry
        .add(
            "p95-bandwidth@1.0.0",
            &bytes(guests::P95_BANDWIDTH),
            Some(&"0".repeat(64)),
        )
        .unwrap_err();
    assert!(matches!(error, LoadError::HashMismatch { .. }), "{error:?}");
}

#[test]
fn a_reference_must_match_the_plugin() {
    let mut registry = PluginRegistry::new(runtime().clone());
    let error = registry
        .add("p95-bandwidth@1.0.1", &bytes(guests::P95_BANDWIDTH), None)
        .unwrap_err();
    assert!(matches!(error, LoadError::NameMismatch { .. }), "{error:?}");
}

#[test]
fn manifests_load_pinned_plugins() {
    let dir = std::env::temp_dir().join(format!("ratecard-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(guests::FLEET_KM, dir.join("fleet-km.wasm")).unwrap();
    let sha = runtime()
        .load(&bytes(guests::FLEET_KM))
        .unwrap()
        .sha256()
        .to_owned();
    let manifest = json!({ "plugins": [{ "reference": "fleet-km@1.0.0", "path": "fleet-km.wasm", "sha256": sha }] });
    std::fs::write(dir.join("plugins.json"), manifest.to_string()).unwrap();
    let registry =
        PluginRegistry::from_manifest(runtime().clone(), &dir.join("plugins.json")).unwrap();
    assert!(registry.get("fleet-km@1.0.0").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
