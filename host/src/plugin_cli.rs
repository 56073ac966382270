//! `ratecard plugin ...`: scaffold, build, check and run customer pricing plugins.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ratecard_engine::plugin::{MetricAccumulator, PriceRequest};
use ratecard_engine::usage::Event;
use ratecard_host::plugins::{Limits, LoadedPlugin, PluginRuntime, RuntimeConfig, Stats};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffolds a plugin crate (a custom metric, or a custom price with `--kind price`).
    New {
        /// The plugin's name (lower-case, dashes): also its crate's name and directory.
        name: String,
        /// Where to create the crate (default: `./NAME`).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Kind::Metric)]
        kind: Kind,
        /// Path of the `ratecard-plugin` SDK crate (default: this checkout's `crates/plugin-sdk`).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Builds a plugin crate for `wasm32-unknown-unknown` and turns it into a component.
    Build {
        /// The plugin crate's directory (default: `.`).
        dir: Option<PathBuf>,
        /// Where to write the component (default: `DIR/target/plugin/NAME.wasm`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checks a component: contract, imports, exports, size, limits, and a dry run.
    Check {
        file: PathBuf,
        /// Config for the dry run (JSON); default `{}`.
        #[arg(long)]
        config: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Runs a plugin on events (a metric) or on a request (a price) and reports its costs.
    Run {
        file: PathBuf,
        /// Events, one JSON object per line (a metric).
        #[arg(long)]
        events: Option<PathBuf>,
        /// A price request (JSON) for a price plugin.
        #[arg(long)]
        request: Option<PathBuf>,
        /// The plugin's config (JSON).
        #[arg(long)]
        config: Option<String>,
        /// Run as a metric or as a price (default: what the plugin says it is).
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Events per `update` call.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Metric,
    Price,
}

/// Sandbox limits (defaults: the host's).
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Fuel per call, before the per-event allowance.
    #[arg(long)]
    fuel: Option<u64>,
    /// Fuel per event.
    #[arg(long)]
    fuel_per_event: Option<u64>,
    /// Linear memory, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Wall time per call, in milliseconds.
    #[arg(long)]
    wall_ms: Option<u64>,
    /// Directory of the compiled-artifact cache.
    #[arg(long)]
    cache: Option<PathBuf>,
}

impl LimitArgs {
    fn runtime(&self) -> Result<PluginRuntime> {
        let mut limits = Limits::default();
        if let Some(fuel) = self.fuel {
            limits.fuel_per_call = fuel;
        }
        if let Some(fuel) = self.fuel_per_event {
            limits.fuel_per_event = fuel;
        }
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib << 20;
        }
        if let Some(ms) = self.wall_ms {
            limits.wall_time = Duration::from_millis(ms);
        }
        let config = RuntimeConfig {
            limits,
            cache_dir: self.cache.clone(),
            max_live_instances: Some(4),
        };
        Ok(PluginRuntime::new(config)?)
    }
}

pub fn run(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New {
            name,
            dir,
            kind,
            sdk,
        } => new(&name, dir, kind, sdk),
        PluginCommand::Build { dir, out } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let (path, bytes) = build(&dir, out)?;
            let runtime = RuntimeConfig::default();
            let plugin = PluginRuntime::new(runtime)?
                .load(&bytes)
                .context("the built component is not a valid plugin")?;
            outln!("built {} ({})", path.display(), plugin.reference());
            outln!("  size    {} bytes", bytes.len());
            outln!("  sha256  {}", plugin.sha256());
            Ok(())
        }
        PluginCommand::Check {
            file,
            config,
            limits,
        } => check(&file, config.as_deref(), &limits),
        PluginCommand::Run {
            file,
            events,
            request,
            config,
            kind,
            batch,
            limits,
        } => run_plugin(
            &file,
            events.as_deref(),
            request.as_deref(),
            config.as_deref(),
            kind,
            batch,
            &limits,
        ),
    }
}

fn load(file: &Path, limits: &LimitArgs) -> Result<LoadedPlugin> {
    let runtime = limits.runtime()?;
    runtime
        .load_file(file)
        .with_context(|| format!("{} is refused", file.display()))
}

/// Loads a plugin and dry-runs it, then prints the report: "ok" comes only once every step of
/// the dry run has passed.
fn check(file: &Path, config: Option<&str>, limits: &LimitArgs) -> Result<()> {
    let plugin = load(file, limits)?;
    let metadata = plugin.metadata();
    let mut report = vec![
        format!("  plugin       {}", plugin.reference()),
        format!("  description  {}", metadata.description),
        format!("  kinds        {}", metadata.kinds.join(", ")),
        "  contract     ratecard:plugin@0.1.0 (imports: log only)".to_owned(),
        format!(
            "  size         {} bytes (limit {})",
            plugin.size(),
            limits.runtime()?.limits().component_bytes
        ),
        format!("  sha256       {}", plugin.sha256()),
        format!("  load time    {:?}", plugin.load_time()),
        format!("  config       {}", metadata.config_schema),
    ];
    let config: serde_json::Value =
        serde_json::from_str(config.unwrap_or("{}")).context("--config is not JSON")?;
    if metadata.kinds.iter().any(|k| k == "metric") {
        let mut metric = plugin.metric(&config).context("dry run: create")?;
        let reads = metric.reads().context("dry run: reads")?.clone();
        report.push(format!("  reads        {reads}"));
        metric.update(&[]).context("dry run: update")?;
        let state = metric.save().context("dry run: save")?;
        metric.merge(&state).context("dry run: merge")?;
        let quantity = metric.finish().context("dry run: finish")?;
        report.push(format!(
            "  dry run      metric on no events = {quantity} ({} fuel)",
            metric.stats().fuel_used
        ));
        report.push(check_merge(&plugin, &config, &reads)?);
    }
    if metadata.kinds.iter().any(|k| k == "price") {
        let request = ratecard_host::plugins::dry_run_request(config);
        let (lines, stats) = plugin
            .price_with_stats(&request)
            .context("dry run: price")?;
        report.push(format!(
            "  dry run      price of no quantities = {} lines ({} fuel)",
            lines.len(),
            stats.fuel_used
        ));
    }
    outln!("{}: ok", file.display());
    for line in report {
        outln!("{line}");
    }
    Ok(())
}

/// The dry run of `save` and `merge`: one accumulator over sample events against two
/// accumulators over the two halves, the second saved and merged into the first, split at
/// every point. A metric whose merge is not the aggregation of the events together gives
/// different quantities depending on how events were batched and workers split, so it is
/// refused. Sample events carry the properties the metric reads, with small numbers.
fn check_merge(
    plugin: &LoadedPlugin,
    config: &serde_json::Value,
    reads: &ratecard_host::plugins::convert::Reads,
) -> Result<String> {
    const VALUES: [u32; 8] = [3, 1, 4, 1, 5, 9, 2, 6];
    let properties = reads.properties.clone().unwrap_or_default();
    let texts: Vec<String> = VALUES
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let props: serde_json::Map<String, serde_json::Value> = properties
                .iter()
                .map(|name| (name.clone(), serde_json::Value::from(*value)))
                .collect();
            serde_json::json!({
                "id": format!("dry-run-{i}"),
                "customer": "dry-run",
                "timestamp": format!("2026-01-01T00:{i:02}:00Z"),
                "code": "dry-run",
                "properties": props,
            })
            .to_string()
        })
        .collect();
    let events: Vec<Event<'static>> = texts
        .iter()
        .map(|text| serde_json::from_str::<Event<'_>>(text).map(Event::into_owned))
        .collect::<Result<_, _>>()
        .context("dry run: sample events")?;
    let mut whole = plugin.metric(config).context("dry run: create")?;
    if let Err(error) = whole.update(&events) {
        return Ok(format!(
            "  merge        not checked: the plugin refuses the sample events ({error})"
        ));
    }
    let expected = whole.finish().context("dry run: finish")?;
    for split in 1..events.len() {
        let mut first = plugin.metric(config).context("dry run: create")?;
        let mut second = plugin.metric(config).context("dry run: create")?;
        first.update(&events[..split]).context("dry run: update")?;
        second.update(&events[split..]).context("dry run: update")?;
        let state = second.save().context("dry run: save")?;
        first.merge(&state).context("dry run: merge")?;
        let merged = first.finish().context("dry run: finish")?;
        if merged != expected {
            bail!(
                "dry run: merge is not the aggregation of the events together: {} sample events in one accumulator give {expected}, split after event {split} and merged they give {merged}",
                events.len()
            );
        }
    }
    Ok(format!(
        "  merge        {} sample events: one accumulator = every split merged = {expected}",
        events.len()
    ))
}

fn run_plugin(
    file: &Path,
    events: Option<&Path>,
    request: Option<&Path>,
    config: Option<&str>,
    kind: Option<Kind>,
    batch: usize,
    limits: &LimitArgs,
) -> Result<()> {
    let plugin = load(file, limits)?;
    let config: serde_json::Value =
        serde_json::from_str(config.unwrap_or("{}")).context("--config is not JSON")?;
    let kind = match kind {
        Some(kind) => kind,
        None if plugin.metadata().kinds.iter().any(|k| k == "metric") => Kind::Metric,
        None => Kind::Price,
    };
    let started = Instant::now();
    let (result, stats, log) = match kind {
        Kind::Metric => {
            let Some(events) = events else {
                bail!("a metric runs on --events FILE.ndjson")
            };
            let events = read_events(events)?;
            let mut metric = plugin.metric(&config)?;
            for chunk in events.chunks(batch.max(1)) {
                metric.update(chunk)?;
            }
            let quantity = metric.finish()?;
            let result = format!("quantity {quantity} from {} events", events.len());
            (result, metric.stats(), metric.log().to_vec())
        }
        Kind::Price => {
            let mut request = match request {
                Some(path) => serde_json::from_slice::<PriceRequest>(
                    &std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                )
                .with_context(|| format!("{} is not a price request", path.display()))?,
                None => ratecard_host::plugins::dry_run_request(serde_json::Value::Null),
            };
            if !config.is_null() && config != serde_json::json!({}) {
                request.config = config;
            }
            let (lines, stats) = plugin.price_with_stats(&request)?;
            let mut result = String::new();
            for line in &lines {
                result.push_str(&format!(
                    "\n  {}  {} x -> {}",
                    line.description, line.quantity, line.amount
                ));
                for row in &line.breakdown {
                    result.push_str(&format!("\n      {}: {}", row.description, row.amount.0));
                }
            }
            (
                format!("{} priced lines{result}", lines.len()),
                stats,
                Vec::new(),
            )
        }
    };
    let wall = started.elapsed();
    outln!("{}: {result}", plugin.reference());
    print_stats(&plugin, &stats, wall)?;
    for line in log {
        outln!("  log {:5} {}", line.level, line.message);
    }
    Ok(())
}

fn print_stats(plugin: &LoadedPlugin, stats: &Stats, wall: Duration) -> Result<()> {
    outln!("  fuel used       {}", stats.fuel_used);
    outln!("  peak memory     {} bytes", stats.peak_memory_bytes);
    outln!(
        "  wall time       {wall:?} (instantiate {:?}, in guest {:?}, {} calls)",
        stats.instantiate_time,
        stats.call_time,
        stats.calls
    );
    outln!("  component size  {} bytes", plugin.size());
    outln!("  load time       {:?}", plugin.load_time());
    outln!("  sha256          {}", plugin.sha256());
    Ok(())
}

fn read_events(path: &Path) -> Result<Vec<Event<'static>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event<'_> = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not an event", path.display(), i + 1))?;
        events.push(event.into_owned());
    }
    Ok(events)
}

/// The `rustflags` of a guest build (`--config` syntax); `crates/test-plugins/build.rs` builds the
/// example and test guests with the same flags.
const GUEST_RUSTFLAGS: &str = "target.wasm32-unknown-unknown.rustflags=[\"-C\", \"link-arg=-zstack-size=131072\", \"-C\", \"target-feature=+simd128\"]";

/// Builds the crate in `dir` and componentizes it; returns the component's path and bytes.
pub fn build(dir: &Path, out: Option<PathBuf>) -> Result<(PathBuf, Vec<u8>)> {
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .with_context(|| format!("no Cargo.toml in {}", dir.display()))?;
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--message-format=json-render-diagnostics",
            // A 128 KiB shadow stack instead of rustc's 1 MiB: a smaller initial memory is less
            // for the host to scan and reset per fresh instance (fresh instance + call ~11 µs
            // instead of ~18 µs in `host/benches/plugins.rs`). 128-bit SIMD (deterministic:
            // integer lanes, and the host canonicalizes NaNs) lets the compiler vectorize the
            // SDK's batch check: 226 → 186 fuel per event crossing, 8.68 → 8.15 M fuel per
            // 10 k-event p95 aggregation.
            "--config",
            GUEST_RUSTFLAGS,
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build failed (is the target installed? `rustup target add wasm32-unknown-unknown`)"
        );
    }
    let mut core = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())
            && let Some(files) = message["filenames"].as_array()
        {
            core = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from);
        }
    }
    let Some(core) = core else {
        bail!("cargo produced no .wasm: is the crate a `cdylib`?")
    };
    let bytes = std::fs::read(&core)?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("cannot turn the module into a component")?;
    let out = match out {
        Some(out) => out,
        None => {
            let name = core
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .replace('_', "-");
            core.parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .unwrap_or(dir)
                .join("plugin")
                .join(format!("{name}.wasm"))
        }
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &component)?;
    Ok((out, component))
}

fn new(name: &str, dir: Option<PathBuf>, kind: Kind, sdk: Option<PathBuf>) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        bail!("a plugin name is lower-case letters, digits and dashes: `{name}`");
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.join("Cargo.toml").exists() {
        bail!("{} already holds a crate", dir.display());
    }
    let sdk = match sdk {
        Some(sdk) => sdk,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/plugin-sdk"),
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("no SDK at {}", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), cargo_toml(name, &sdk))?;
    let source = match kind {
        Kind::Metric => METRIC_TEMPLATE,
        Kind::Price => PRICE_TEMPLATE,
    };
    std::fs::write(dir.join("src/lib.rs"), source)?;
    outln!("created {} ({:?} plugin)", dir.display(), kind);
    outln!("  build it:  ratecard plugin build {}", dir.display());
    outln!(
        "  unit tests: cargo test --manifest-path {}/Cargo.toml",
        dir.display()
    );
    Ok(())
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "A Ratecard pricing plugin"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
ratecard-plugin = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

# Its own workspace, so it builds wherever it lives.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
debug = false
strip = true
"#,
        sdk = sdk.display().to_string()
    )
}

const METRIC_TEMPLATE: &str = r#"//! A custom metric: the sum of a numeric property.

use ratecard_plugin::{Decimal, Events, Metric, Reads, Result};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Config {
    property: String,
}

#[derive(Serialize, Deserialize)]
pub struct Sum {
    property: String,
    total: Decimal,
}

impl Metric for Sum {
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Sum { property: config.property, total: Decimal::ZERO })
    }

    // The host passes only what the metric reads of each event: here, one property.
    fn reads(&self) -> Reads {
        Reads::timestamps().property(&self.property)
    }

    fn update(&mut self, events: &Events) -> Result<()> {
        for event in events {
            self.total += event.decimal(&self.property)?;
        }
        Ok(())
    }

    fn merge(&mut self, other: Self) -> Result<()> {
        self.total += other.total;
        Ok(())
    }

    fn finish(&self) -> Result<Decimal> {
        Ok(self.total)
    }
}

ratecard_plugin::export_metric!(Sum);

#[cfg(test)]
mod tests {
    use super::*;
    use ratecard_plugin::{Batch, event, num};

    #[test]
    fn sums_the_property() {
        let mut sum = Sum::new(Config { property: "bytes".into() }).unwrap();
        let events = [
            event("1", 0, "x", &[("bytes", num("1.5"))]),
            event("2", 0, "x", &[("bytes", num("2"))]),
        ];
        // The batch the host would pass: only what `reads` asks for.
        sum.update(&Batch::with_reads(&events, &sum.reads()).events()).unwrap();
        assert_eq!(sum.finish().unwrap(), "3.5".parse().unwrap());
    }
}
"#;

const PRICE_TEMPLATE: &str = r#"//! A custom price: every group's quantity at one unit price.

use ratecard_plugin::{
    BreakdownRow, Decimal, Price, PriceRequest, PricedLine, Result, format_decimal, parse_decimal,
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Config {
    unit_price: Decimal,
}

pub struct UnitPrice;

impl Price for UnitPrice {
    type Config = Config;

    fn price(config: Config, request: &PriceRequest) -> Result<Vec<PricedLine>> {
        let mut lines = Vec::new();
        for quantity in &request.quantities {
            let units = parse_decimal(&quantity.quantity)?;
            let amount = format_decimal(units * config.unit_price);
            lines.push(PricedLine {
                description: "usage".into(),
                group: quantity.group.clone(),
                quantity: quantity.quantity.clone(),
                amount: amount.clone(),
                breakdown: vec![BreakdownRow {
                    description: "units at the unit price".into(),
                    quantity: Some(quantity.quantity.clone()),
                    unit_price: Some(format_decimal(config.unit_price)),
                    amount,
                }],
            });
        }
        Ok(lines)
    }
}

ratecard_plugin::export_price!(UnitPrice);
"#;
