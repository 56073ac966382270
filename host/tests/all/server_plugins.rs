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
                    end: None,
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
        let refused = server.upload_plugin(&bytes, None).await.unwrap_err();
        assert!(refused.to_string().contains("refused"), "{why}: {refused}");
    }
    assert!(server.plugins_uploaded().await.unwrap().is_empty());

    let component = std::fs::read(guests::P95_BANDWIDTH).unwrap();
    let check = server
        .upload_plugin(&component, None)
        .await
        .expect("accepted");
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

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `examples/demo/` holds built components so `ratecard serve --demo` needs no wasm toolchain;
/// they must be the build of `examples/plugins/` (byte for byte: the guests' build names no
/// machine path). `UPDATE_EXPECT=1` writes them.
#[test]
fn the_demos_committed_components_are_the_build_of_their_sources() {
    for (name, built) in [
        ("p95-bandwidth.wasm", guests::P95_BANDWIDTH),
        ("tou-electricity.wasm", guests::TOU_ELECTRICITY),
    ] {
        let committed = repo().join("examples/demo").join(name);
        let fresh = std::fs::read(built).expect("the guest build");
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&committed, &fresh).expect("written");
        }
        let kept = std::fs::read(&committed).expect("the committed component");
        assert!(
            kept == fresh,
            "examples/demo/{name} is not the build of examples/plugins/ ({} vs {} bytes): \
             refresh it with `UPDATE_EXPECT=1 cargo test -p ratecard-host --test all demos_committed`",
            kept.len(),
            fresh.len()
        );
    }
}

/// A price plugin whose config has required fields is refused by a dry run with `{}`, saying
/// how to give one; with the config a plan gives it, it is accepted.
#[tokio::test]
async fn an_upload_dry_runs_with_the_config_it_is_given() {
    let dir = std::env::temp_dir().join(format!("ratecard-upload-config-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let server = open(&dir).await;
    let component = std::fs::read(guests::TOU_ELECTRICITY).unwrap();
    let refused = server
        .upload_plugin(&component, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("rates") && refused.contains("?config="),
        "{refused}"
    );
    assert!(server.plugins_uploaded().await.unwrap().is_empty());
    let bad = server
        .upload_plugin(&component, Some(json!({"rates": {"peak": "x"}})))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("dry run") && !bad.contains("?config="),
        "{bad}"
    );
    let check = server
        .upload_plugin(&component, Some(json!({"rates": {"peak": "0.30"}})))
        .await
        .expect("accepted");
    assert_eq!(check.reference, "tou-electricity@1.0.0");
    drop(std::fs::remove_dir_all(&dir));
}

/// The demo's plugins part: both components active, the colocation customer rated by them, the
/// same as the CLI's registry of the same components rates their events.
#[tokio::test]
async fn the_demo_activates_its_plugins_and_rates_a_customer_with_them() {
    use ratecard_host::server::demo;
    let dir = std::env::temp_dir().join(format!("ratecard-demo-plugins-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let server = open(&dir).await;
    let read = |name: &str| std::fs::read(repo().join("examples/demo").join(name)).unwrap();
    let plan: ratecard_engine::plan::Plan =
        serde_json::from_slice(&read("colocation.json")).unwrap();
    let (references, n_events) = demo::seed_plugins(
        &server,
        demo::DemoPlugins {
            components: vec![read("p95-bandwidth.wasm"), read("tou-electricity.wasm")],
            plan: plan.clone(),
        },
    )
    .await
    .expect("seeded");
    assert_eq!(references, ["p95-bandwidth@1.0.0", "tou-electricity@1.0.0"]);
    // Now 2026-11-20T00:00Z: hourly from 2026-11-02T01:00Z (431 hours), two events each.
    assert_eq!(n_events, 2 * (18 * 24 - 1));
    let listed = server.plugins_uploaded().await.unwrap();
    assert!(listed.iter().all(|p| p.active) && listed.len() == 2);
    let live = server
        .live_usage(demo::PLUGIN_CUSTOMER.0)
        .await
        .unwrap()
        .expect("subscribed");
    let charges: Vec<&str> = live.lines.iter().map(|l| l.charge_id.as_str()).collect();
    assert_eq!(charges, ["rack", "transit", "power", "power"], "{live:?}");
    // The 95th percentile drops the bursts: 900 Mbps samples are under 5 % of the hours.
    let transit = &live.lines[1];
    assert!(
        transit.quantity.parse::<u32>().unwrap() < 200 - 100,
        "{transit:?}"
    );
    // The preview adds up (lines to subtotal, taxes to total), and live usage is that preview.
    let invoice = server
        .preview(demo::PLUGIN_CUSTOMER.0, "2026-11-15")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(invoice.total.0.to_string(), {
        let sum: rust_decimal::Decimal = invoice.lines.iter().map(|l| l.amount.0).sum();
        let taxed = invoice.subtotal.0
            + invoice
                .taxes
                .iter()
                .map(|t| t.amount.0)
                .sum::<rust_decimal::Decimal>();
        assert_eq!(sum, invoice.subtotal.0);
        taxed.to_string()
    });
    assert_eq!(
        live.amount_so_far,
        invoice.total.0.to_string(),
        "live usage is the preview"
    );
    // The portal's days: the plugin's metric has no snapshot, so each day's end is replayed;
    // the last day's p95 is the period's.
    let days = server
        .usage_days(demo::PLUGIN_CUSTOMER.0)
        .await
        .unwrap()
        .expect("in force");
    let codes: Vec<&str> = days.metrics.iter().map(|m| m.code.as_str()).collect();
    assert_eq!(codes, ["bandwidth", "energy"]);
    assert_eq!(days.days.len(), 20, "2026-11-01 to 2026-11-20 (Amsterdam)");
    let last = &days.days.last().unwrap().metrics["bandwidth"];
    assert_eq!(
        last.to_date,
        (transit.quantity.parse::<u32>().unwrap() + 100).to_string()
    );
    drop(std::fs::remove_dir_all(&dir));
}
