//! `ratecard`: the command line. Thin: parsing arguments, reading files, printing; the work is
//! in `ratecard-engine` and the host library.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ratecard_engine::Decimal;
use ratecard_engine::decimal::parse_decimal;
use ratecard_engine::estimate;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::{NoPlugins, PluginHost};
use ratecard_engine::rate::{PreparedPlan, RateError, quote};
use ratecard_engine::usage::Usage;
use ratecard_engine::validate::validate_plan;
use ratecard_host::plugins::{PluginRegistry, PluginRuntime, RuntimeConfig};
use ratecard_host::rating::{RateRequest, RatedOutcome, StreamError, rate_stream};
use ratecard_host::table;

/// Writes a line to standard output, returning an error (never panicking) when it is closed:
/// `main` ends quietly on a broken pipe, as ripgrep does (`ratecard … | head -2`).
macro_rules! outln {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// [`outln!`] without the newline.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!($($arg)*))?
    };
}

/// Writes a line to standard error; a closed standard error is ignored (there is nowhere left
/// to say anything), never a panic.
macro_rules! errln {
    ($($arg:tt)*) => {
        drop(std::io::Write::write_fmt(&mut std::io::stderr().lock(), format_args!("{}\n", format_args!($($arg)*))))
    };
}

mod plugin_cli;
mod serve;

/// Ratecard: usage-based billing, rated exactly.
#[derive(Debug, Parser)]
#[command(name = "ratecard", version, about)]
struct Cli {
    /// A plugin manifest (`{"plugins": [{"reference": "p95@1.0.0", "path": "p95.wasm",
    /// "sha256": "…"}]}`): plans may then use these plugins for custom metrics and prices.
    #[arg(long, global = true)]
    plugins: Option<PathBuf>,
    /// Where compiled plugins are cached (by component sha256 and engine compatibility).
    #[arg(long, global = true)]
    plugin_cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum Format {
    Json,
    #[default]
    Table,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints an invoice preview for a plan and a usage document (aggregated quantities or raw events).
    Quote {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        usage: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Validates a plan: every error with its JSON path, then lint warnings. Exits 1 on errors.
    Validate {
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Rates an NDJSON event file: one invoice per customer for one period. Exits 0 when every
    /// line was rated, 2 when bad lines were reported and skipped, 1 when a customer could not
    /// be invoiced (or with `--strict`, at the first bad line).
    Rate {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        events: PathBuf,
        /// A date inside the period (`2026-11-15`) or a month (`2026-11`).
        #[arg(long)]
        period: String,
        /// IANA timezone of the customers (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// Customer setups: a JSON object of customer id → `{"timezone", "subscription",
        /// "credits", "attributes", "carry_in"}`. Described customers without events are invoiced too.
        #[arg(long)]
        customers: Option<PathBuf>,
        /// Stop at the first malformed line (exit 1) instead of reporting it and going on.
        #[arg(long)]
        strict: bool,
        /// Worker threads (default: one per core, at most 8). Invoices do not depend on it.
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        threads: usize,
        /// `json`: one invoice per line (NDJSON); `table`: readable invoices.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Write invoices here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints the JSON Schema of a public format.
    Schema {
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// Estimates for pricing pages and sales.
    Estimate {
        #[command(subcommand)]
        what: EstimateCommand,
    },
    /// Plugins: scaffold, build, check and run customer pricing plugins.
    Plugin {
        #[command(subcommand)]
        command: plugin_cli::PluginCommand,
    },
    /// Imports a rate card from another platform: `ratecard import stripe prices.json --id my-plan`
    /// (Stripe Price objects, a list, or a `GET /v1/prices` page) or `ratecard import lago
    /// plan.json` (a Lago plan with its `billable_metrics`) or `ratecard import openmeter
    /// plan.json` (an OpenMeter plan with its `features` and `meters`) prints a Ratecard plan;
    /// what could not be carried over is listed on stderr by JSON path (exit 2 when anything
    /// was).
    Import {
        #[arg(value_enum)]
        from: ImportFrom,
        file: PathBuf,
        /// The id of the plan to create (required for Stripe; Lago's plan `code`, OpenMeter's
        /// plan `key` by default).
        #[arg(long)]
        id: Option<String>,
    },
    /// Serves the pricing page, quote builder and plan editor (priced in the browser by the
    /// engine compiled to WebAssembly) with the example plans; prints the URL.
    Serve(serve::ServeArgs),
    /// Operator API keys for the server's store (`keys create`).
    Keys(serve::KeysArgs),
    /// Runs the demo: an invoice preview of the embedded example plan.
    Demo,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ImportFrom {
    Stripe,
    Lago,
    Openmeter,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SchemaOf {
    Plan,
    Usage,
    Invoice,
}

#[derive(Debug, Subcommand)]
enum EstimateCommand {
    /// The total at a usage: `--usage api_calls=120000 --usage storage_gb=40`.
    At {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long = "usage", value_parser = parse_pair)]
        usage: Vec<(String, Decimal)>,
    },
    /// Samples of the total as one metric grows (JSON, for plotting).
    Curve {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        metric: String,
        #[arg(long, value_parser = parse_dec, default_value = "0")]
        from: Decimal,
        #[arg(long, value_parser = parse_dec)]
        to: Decimal,
        #[arg(long, default_value_t = 50)]
        samples: u32,
        #[arg(long = "usage", value_parser = parse_pair)]
        usage: Vec<(String, Decimal)>,
    },
    /// The usage at which the cheaper of two plans changes.
    BreakEven {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        other: PathBuf,
        #[arg(long)]
        metric: String,
        #[arg(long, value_parser = parse_dec, default_value = "0")]
        from: Decimal,
        #[arg(long, value_parser = parse_dec)]
        to: Decimal,
        #[arg(long = "usage", value_parser = parse_pair)]
        usage: Vec<(String, Decimal)>,
    },
    /// Plans ranked by total for a usage profile.
    Cheapest {
        #[arg(long = "plan", required = true)]
        plans: Vec<PathBuf>,
        #[arg(long = "usage", value_parser = parse_pair)]
        usage: Vec<(String, Decimal)>,
    },
    /// The largest usage of a metric that fits a budget.
    Budget {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        metric: String,
        #[arg(long, value_parser = parse_dec)]
        budget: Decimal,
        #[arg(long = "usage", value_parser = parse_pair)]
        usage: Vec<(String, Decimal)>,
    },
}

fn parse_dec(text: &str) -> Result<Decimal, String> {
    parse_decimal(text)
}

fn parse_pair(text: &str) -> Result<(String, Decimal), String> {
    let (metric, quantity) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected METRIC=QUANTITY"))?;
    Ok((metric.to_owned(), parse_decimal(quantity)?))
}

/// The demo's embedded default plan and usage.
const DEMO_PLAN: &str = include_str!("../../examples/plans/saas-api.json");
const DEMO_USAGE: &str = include_str!("../../examples/usage/saas-api.json");

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted is written, nothing is wrong.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether an error comes from writing into a closed pipe.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = match cause.downcast_ref::<serde_json::Error>() {
            Some(json) => json.io_error_kind(),
            None => cause.downcast_ref::<std::io::Error>().map(|e| e.kind()),
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    parse_json(&text).with_context(|| format!("in {}", path.display()))
}

/// A file's text; bytes that are not UTF-8 are an error naming the line.
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|error| {
        let at = error.utf8_error().valid_up_to();
        let line = error.as_bytes()[..at]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!(
            "{}: line {line}: not UTF-8 text (byte {at})",
            path.display()
        )
    })
}

/// A document that could not be read: every error with its JSON path.
#[derive(Debug)]
struct InvalidJson(Vec<ratecard_engine::json::ParseError>);

impl std::fmt::Display for InvalidJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid JSON document ({}):",
            count(self.0.len(), "error")
        )?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidJson {}

/// Parses JSON, naming the JSON path (and line) of every error.
fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    ratecard_engine::json::parse(text).map_err(|errors| InvalidJson(errors).into())
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The plugin host of this run: the manifest's plugins, sandboxed, or none.
fn load_plugins(manifest: Option<&Path>, cache_dir: Option<&Path>) -> Result<Box<dyn PluginHost>> {
    let Some(manifest) = manifest else {
        return Ok(Box::new(NoPlugins));
    };
    let config = RuntimeConfig {
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..Default::default()
    };
    let runtime = PluginRuntime::new(config).context("starting the plugin runtime")?;
    let registry = PluginRegistry::from_manifest(runtime, manifest)
        .with_context(|| format!("loading plugins from {}", manifest.display()))?;
    Ok(Box::new(registry))
}

/// Fails with `error`; as a JSON line `{"error": {code, document, path, issues, message}}` on
/// standard error when `as_json` and the error is one the engine reports (a document that
/// cannot be read, a rating error), else as the usual message.
fn error_report(
    error: anyhow::Error,
    as_json: bool,
    document: &str,
    plan: Option<&Plan>,
) -> Result<ExitCode> {
    use ratecard_engine::error::ErrorReport;
    let report = if let Some(InvalidJson(errors)) = error.downcast_ref::<InvalidJson>() {
        ErrorReport::invalid_json(document, errors)
    } else if let Some(rate) = error.downcast_ref::<RateError>() {
        let report = ErrorReport::from(rate);
        match plan {
            Some(plan) => report.in_plan(plan, rate),
            None => report,
        }
    } else {
        return Err(error);
    };
    if !as_json {
        return Err(error);
    }
    errln!("{}", serde_json::json!({ "error": report }));
    Ok(ExitCode::FAILURE)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let Some(command) = cli.command else {
        return demo();
    };
    let needs_plugins = matches!(
        command,
        Command::Quote { .. } | Command::Rate { .. } | Command::Estimate { .. }
    );
    let plugin_host = if needs_plugins {
        load_plugins(cli.plugins.as_deref(), cli.plugin_cache.as_deref())?
    } else {
        Box::new(NoPlugins)
    };
    let plugins = || plugin_host.as_ref();
    match command {
        Command::Demo => demo(),
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Keys(args) => serve::keys(args).map(|()| ExitCode::SUCCESS),
        Command::Quote {
            plan,
            usage,
            format,
        } => {
            // With `--format json` an error is also JSON (on standard error): the engine's
            // report of what it is and where (code, document, JSON path, every finding).
            let as_json = matches!(format, Format::Json);
            let plan: Plan = match read_json(&plan) {
                Ok(plan) => plan,
                Err(error) => return error_report(error, as_json, "plan", None),
            };
            let usage: Usage = match read_json(&usage) {
                Ok(usage) => usage,
                Err(error) => return error_report(error, as_json, "usage", Some(&plan)),
            };
            let invoice = match quote(&plan, &usage, plugins()) {
                Ok(invoice) => invoice,
                Err(error) => return error_report(error.into(), as_json, "usage", Some(&plan)),
            };
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&invoice)?),
                Format::Table => out!("{}", table::invoice(&invoice)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { plan, format } => {
            // Every error the document has, also those that keep it from being read as a plan.
            let text = read_text(&plan)?;
            let report = ratecard_engine::validate::validate_plan_json(&text);
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
                Format::Table => out!("{}", table::report(&report)),
            }
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Rate {
            plan,
            events,
            period,
            timezone,
            customers,
            strict,
            threads,
            format,
            out,
        } => {
            let plan: Plan = read_json(&plan)?;
            let file =
                File::open(&events).with_context(|| format!("opening {}", events.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(size)
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let customers = match customers {
                Some(path) => read_json(&path)?,
                None => Default::default(),
            };
            let request = RateRequest {
                period: period.clone(),
                default_timezone: timezone,
                strict,
                customers,
                threads,
            };
            let prepared = PreparedPlan::of(&plan)?;
            let started = std::time::Instant::now();
            // Invoices are written as each batch of customers is priced; the output file is
            // created with the first one (or at the end), so a run that cannot start leaves none.
            let mut output: Option<Box<dyn Write>> = None;
            let mut write_error = None;
            let open_output = || -> Result<Box<dyn Write>> {
                Ok(match &out {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                })
            };
            let (mut n_invoices, mut not_started, mut ended, mut failed) =
                (0u64, Vec::new(), Vec::new(), Vec::new());
            let summary = rate_stream(
                &prepared,
                BufReader::with_capacity(1 << 20, file),
                &request,
                plugins(),
                |n| bar.set_position(n),
                |rated| match rated.outcome {
                    RatedOutcome::Invoice(invoice) => {
                        n_invoices += 1;
                        if write_error.is_some() {
                            return;
                        }
                        let written = (|| -> Result<()> {
                            if output.is_none() {
                                output = Some(open_output()?);
                            }
                            if let Some(sink) = output.as_mut() {
                                match format {
                                    Format::Json => {
                                        serde_json::to_writer(&mut *sink, &invoice)?;
                                        writeln!(sink)?;
                                    }
                                    Format::Table => {
                                        writeln!(sink, "{}", table::invoice(&invoice))?
                                    }
                                }
                            }
                            Ok(())
                        })();
                        if let Err(error) = written {
                            write_error = Some(error);
                        }
                    }
                    RatedOutcome::NotStarted => not_started.push(rated.customer),
                    RatedOutcome::Ended => ended.push(rated.customer),
                    RatedOutcome::Failed(error) => failed.push((rated.customer, error)),
                },
            )
            .map_err(|error| match error {
                // The request's period and timezone are the command's flags.
                StreamError::Request(RateError::Period { path, error }) => {
                    let flag = if path.contains("timezone") {
                        "--timezone"
                    } else {
                        "--period"
                    };
                    anyhow::anyhow!("{flag}: {error}")
                }
                other => other.into(),
            })?;
            bar.finish_and_clear();
            if let Some(error) = write_error {
                return Err(error);
            }
            let mut sink = match output {
                Some(sink) => sink,
                None => open_output()?,
            };
            sink.flush()?;
            let elapsed = started.elapsed().as_secs_f64();
            for error in summary.errors.iter().take(50) {
                errln!("{error}");
            }
            if summary.errors.len() > 50 {
                errln!("… and {} more bad lines", summary.errors.len() - 50);
            }
            if !not_started.is_empty() {
                errln!(
                    "not invoiced, subscribed after this period: {}",
                    not_started.join(", ")
                );
            }
            if !ended.is_empty() {
                errln!(
                    "not invoiced, subscription ended before this period: {}",
                    ended.join(", ")
                );
            }
            for (customer, error) in &failed {
                errln!("customer {customer}: {error}");
            }
            errln!(
                "{} lines, {} events counted, {} skipped, {} bad; {} invoices ({} failed); {:.2}s, {:.0} lines/s",
                summary.n_lines,
                summary.n_counted,
                summary.n_skipped,
                summary.errors.len(),
                n_invoices,
                failed.len(),
                elapsed,
                summary.n_lines as f64 / elapsed.max(1e-9)
            );
            if summary.stopped {
                bail!("stopped at the first bad line (--strict)");
            }
            // 1: a customer could not be invoiced; 2: every customer was, and bad lines were
            // reported (and skipped); 0: everything was rated.
            Ok(if !failed.is_empty() {
                ExitCode::FAILURE
            } else if !summary.errors.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Schema { of } => {
            let schema = match of {
                SchemaOf::Plan => schemars::schema_for!(Plan),
                SchemaOf::Usage => schemars::schema_for!(Usage),
                SchemaOf::Invoice => schemars::schema_for!(ratecard_engine::invoice::Invoice),
            };
            outln!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Estimate { what } => estimate_command(what, plugins()),
        Command::Import { from, file, id } => {
            let export: serde_json::Value = read_json(&file)?;
            let imported = match from {
                ImportFrom::Stripe => {
                    let id = id.context("`--id` is required to import Stripe prices")?;
                    ratecard_engine::import::Imported {
                        plan: ratecard_engine::import::stripe_prices(&export, &id)?,
                        not_carried: Vec::new(),
                    }
                }
                ImportFrom::Lago => ratecard_engine::import::lago_plan(&export, id.as_deref())?,
                ImportFrom::Openmeter => {
                    ratecard_engine::import::openmeter_plan(&export, id.as_deref())?
                }
            };
            let report = validate_plan(&imported.plan);
            for issue in report.errors.iter().chain(&report.warnings) {
                errln!("{:?}: {issue}", issue.severity);
            }
            for not_carried in &imported.not_carried {
                errln!("not carried over: {not_carried}");
            }
            outln!("{}", serde_json::to_string_pretty(&imported.plan)?);
            Ok(if !report.is_ok() {
                ExitCode::FAILURE
            } else if !imported.not_carried.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Plugin { command } => {
            plugin_cli::run(command)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn demo() -> Result<ExitCode> {
    let plan: Plan = parse_json(DEMO_PLAN)?;
    let usage: Usage = parse_json(DEMO_USAGE)?;
    let invoice = quote(&plan, &usage, &NoPlugins)?;
    out!("{}", table::invoice(&invoice));
    outln!("");
    outln!(
        "This is the embedded example (examples/plans/saas-api.json with examples/usage/saas-api.json)."
    );
    outln!(
        "Try: ratecard quote --plan examples/plans/cloud-storage.json --usage examples/usage/cloud-storage.json"
    );
    outln!("     ratecard validate examples/plans/utility-tiers.json");
    outln!(
        "     ratecard estimate curve --plan examples/plans/saas-api.json --metric api_calls --to 5000000"
    );
    Ok(ExitCode::SUCCESS)
}

fn estimate_command(what: EstimateCommand, plugins: &dyn PluginHost) -> Result<ExitCode> {
    let to_map = |pairs: Vec<(String, Decimal)>| pairs.into_iter().collect::<BTreeMap<_, _>>();
    match what {
        EstimateCommand::At { plan, usage } => {
            let plan: Plan = read_json(&plan)?;
            let invoice = quote(&plan, &estimate::typical_usage(&to_map(usage)), plugins)?;
            out!("{}", table::invoice(&invoice));
        }
        EstimateCommand::Curve {
            plan,
            metric,
            from,
            to,
            samples,
            usage,
        } => {
            let plan: Plan = read_json(&plan)?;
            let curve =
                estimate::cost_curve(&plan, &metric, from, to, samples, &to_map(usage), plugins)?;
            outln!("{}", serde_json::to_string_pretty(&curve)?);
        }
        EstimateCommand::BreakEven {
            plan,
            other,
            metric,
            from,
            to,
            usage,
        } => {
            let (a, b): (Plan, Plan) = (read_json(&plan)?, read_json(&other)?);
            match estimate::break_even(&a, &b, &metric, from, to, &to_map(usage), plugins)? {
                Some(found) => outln!("{}", serde_json::to_string_pretty(&found)?),
                None => outln!(
                    "no break-even between {from} and {to}: one plan is cheaper (or equal) throughout"
                ),
            }
        }
        EstimateCommand::Cheapest { plans, usage } => {
            let plans: Vec<Plan> = plans.iter().map(|p| read_json(p)).collect::<Result<_>>()?;
            for (rank, (plan, total)) in estimate::cheapest_plan(&plans, &to_map(usage), plugins)?
                .into_iter()
                .enumerate()
            {
                outln!(
                    "{}. {} ({}): {} {}",
                    rank + 1,
                    plan.id,
                    plan.name,
                    total,
                    plan.currency
                );
            }
        }
        EstimateCommand::Budget {
            plan,
            metric,
            budget,
            usage,
        } => {
            let plan: Plan = read_json(&plan)?;
            match estimate::max_usage_within_budget(
                &plan,
                &metric,
                budget,
                None,
                &to_map(usage),
                plugins,
            )? {
                Some(quantity) => outln!("{quantity}"),
                None => outln!("even zero usage exceeds the budget of {budget}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
