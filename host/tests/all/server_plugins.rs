//! Plugins on the server: upload (checked, stored), activate, rate with them; a refused upload
//! stores nothing; the active version survives a restart.

use ratecard_engine::plugin::NoPlugins;
use ratecard_engine::usage::{CustomerSetup, Subscription};
use ratecard_host::plugins::{PluginRuntime, RuntimeConfig};
use ratecard_host::server::plugins::ServerPlugins;
use ratecard_host::server::{CustomerRecord, ManualClock, Server};
use ratecard_test_plugins as guests;
use serde_json::json;

const PLAN: &str = r#"{
  "id": "bandwidth",
  "currency": "USD",
  "interval": "month",
  "metrics": [
    {"code": "bw", "name": "p95 bandwidth", "event": "bw",
     "aggregation": {"type": "custom", "plugin": "p95-bandwidth@1.0.0", "config": {"property": "mbps"}}}
  ],
  "charges": [{"id": "bw", "metric": "bw", "model": {"type": "per_unit", "unit_price": "0.75"}}]
}"#;

fn plugins() -> &'static ServerPlugins {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("a runtime");
    Box::leak(Box::new(ServerPlugins::new(runtime)))
}

async fn open(dir: &std::path::Path) -> Server {
    let now = ratecard_engine::usage::Timestamp::parse_rfc3339("2026-11-20T00:00:00Z")
        .unwrap()
        .0;
    Server::open(dir, Box::new(ManualClock::at(now)), &NoPlugins)
        .await
        .expect("opens")
        .with_plugins(plugins())
        .await
        .expect("its plugins load")
}

#[tokio::test]
async fn uploaded_plugins_are_checked_activated_and_rate_the_plans_naming_them() {
    let dir = std::env::temp_dir().join(format!("ratecard-server-plugins-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let server = open(&dir).await;
    let plan = server
        .add_plan(serde_json::from_str(PLAN).unwrap())
        .await
        .expect("a plan");
    server
        .put_customer(CustomerRecord {
            id: "acme".to_owned(),
            setup: CustomerSetup {
                subscription: Some(Subscription {
                    start: "2026-10-01".to_owned(),
                    billing_anchor: None,
                }),
                ..CustomerSetup::default()
            },
            plan: Some(plan),
        })
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            json!({"id": format!("b{i}"), "customer": "acme",
                         "timestamp": format!("2026-11-{:02}T10:00:00Z", 1 + i % 19),
                         "code": "bw", "properties": {"mbps": i + 1}})
        })
        .collect();
    server.ingest(events.clone()).await.unwrap();
    // The same events quoted by the CLI's path: a registry of the same component.
    let expected = {
        let mut registry = ratecard_host::plugins::PluginRegistry::new(
            PluginRuntime::new(RuntimeConfig::default()).unwrap(),
        );
        registry
            .add(
                "p95-bandwidth@1.0.0",
                &std::fs::read(guests::P95_BANDWIDTH).unwrap(),
                None,
            )
            .unwrap();
        let usage: ratecard_engine::usage::Usage = serde_json::from_value(json!({
            "customer": {"id": "acme"},
            "subscription": {"start": "2026-10-01"},
            "period": {"containing": "2026-11-15"},
            "events": events,
        }))
        .unwrap();
        let plan: ratecard_engine::plan::Plan = serde_json::from_str(PLAN).unwrap();
        ratecard_engine::rate::quote(&plan, &usage, &registry)
            .expect("quoted")
            .total
            .0
            .to_string()
    };
    assert_ne!(expected, "0.00");

    // Not uploaded yet: the plan cannot be rated, and says why.
    let missing = server.preview("acme", "2026-11-15").await.unwrap_err();
    assert!(
        missing.to_string().contains("p95-bandwidth@1.0.0"),
        "{missing}"
    );

    // Refused uploads store nothing.
    for (bytes, why) in [
        (b"not wasm".to_vec(), "garbage"),
        (std::fs::read(guests::WASI_IMPORT).unwrap(), "a WASI import"),
        (
            std::fs::read(guests::WRONG_EXPORTS).unwrap(),
            "wrong exports",
        ),
    ] {
        let refused = server.upload_plugin(&bytes).await.unwrap_err();
        assert!(refused.to_string().contains("refused"), "{why}: {refused}");
    }
    assert!(server.plugins_uploaded().await.unwrap().is_empty());

    let component = std::fs::read(guests::P95_BANDWIDTH).unwrap();
    let check = server.upload_plugin(&component).await.expect("accepted");
    assert_eq!(check.reference, "p95-bandwidth@1.0.0");
    assert_eq!(check.sha256.len(), 64);
    assert!(!check.active);
    assert!(
        check
            .dry_run
            .iter()
            .any(|s| s.contains("metric on no events")),
        "{check:?}"
    );
    // Uploaded is not active: still not rated.
    assert!(server.preview("acme", "2026-11-15").await.is_err());
    let wrong = server
        .activate_plugin("p95-bandwidth@1.0.0", &"0".repeat(64))
        .await;
    assert!(wrong.unwrap_err().to_string().contains("does not exist"));
    let active = server
        .activate_plugin("p95-bandwidth@1.0.0", &check.sha256)
        .await
        .expect("activated");
    assert!(active.active);

    let invoice = server.preview("acme", "2026-11-15").await.unwrap().unwrap();
    assert_eq!(invoice.total.0.to_string(), expected);
    let live = server.live_usage("acme").await.unwrap().unwrap();
    assert_eq!(live.amount_so_far, expected);
    assert_eq!(
        live.projected_total, None,
        "a plugin metric is not extrapolated"
    );
    drop(server);

    // Restarted: the active version is loaded from the store.
    let server = open(&dir).await;
    let listed = server.plugins_uploaded().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active);
    let invoice = server.preview("acme", "2026-11-15").await.unwrap().unwrap();
    assert_eq!(invoice.total.0.to_string(), expected);
    drop(std::fs::remove_dir_all(&dir));
}
