//! `cargo xtask`: the project's scripted tasks.
//!
//! - `cargo xtask test`: installs what a fresh machine lacks (idempotently), checks the engine
//!   builds for `wasm32-unknown-unknown`, checks formatting and clippy (warnings are errors),
//!   then runs every test of the workspace.
//! - `cargo xtask bench`: the benchmarks (release), printing figures and ratios.
//! - `cargo xtask bench-duckdb [--events N]`: `ratecard rate` against DuckDB on the same events
//!   (installs the `duckdb` Python package itself; see `benches/duckdb/README.md`).
//! - `cargo xtask schemas`: regenerates `docs/schema/*.schema.json` from the engine's types.
//! - `cargo xtask web-build`: builds the browser package (`crates/wasm` with wasm-pack, wasm-opt
//!   from npm's binaryen, TypeScript declarations from the schemas) into `web/pkg/`, which is
//!   committed so the pages run without a wasm toolchain; `test` fails when it is stale.
//! - `cargo xtask bench-web`: the binding's quote/total latency in Node against decimal.js.

use std::process::Command;

use anyhow::{Context, Result, bail};

mod web;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("bench") => bench(),
        Some("schemas") => run(
            "cargo",
            &["test", "-q", "-p", "ratecard-tests", "--test", "schemas"],
            &[("UPDATE_EXPECT", "1")],
        ),
        Some("setup") => setup(),
        Some("bench-duckdb") => bench_duckdb(&args[1..]),
        Some("web-build") => web::build(),
        Some("bench-web") => web::bench(),
        _ => {
            eprintln!(
                "usage: cargo xtask <test|bench|bench-duckdb|bench-web|schemas|setup|web-build>"
            );
            bail!("unknown task {:?}", args.first())
        }
    }
}

fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("$ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed with {status}", args.join(" "));
    }
    Ok(())
}

/// Installs what a fresh machine lacks. Idempotent: each step checks first.
fn setup() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    if !installed
        .lines()
        .any(|l| l.trim() == "wasm32-unknown-unknown")
    {
        run("rustup", &["target", "add", "wasm32-unknown-unknown"], &[])?;
    }
    for (component, probe) in [("clippy", "clippy"), ("rustfmt", "fmt")] {
        let present = Command::new("cargo")
            .args([probe, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            run("rustup", &["component", "add", component], &[])?;
        }
    }
    postgres()?;
    web::setup()
}

/// PostgreSQL for the store's tests on the second backend (they start throwaway clusters
/// from its binaries): the distribution's package where no `initdb` is found.
fn postgres() -> Result<()> {
    let found = std::env::var_os("RATECARD_PG_BIN").is_some()
        || std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .any(|version| version.path().join("bin/initdb").is_file());
    if found {
        return Ok(());
    }
    run("apt-get", &["update"], &[])?;
    run("apt-get", &["install", "-y", "postgresql"], &[])
}

fn test() -> Result<()> {
    setup()?;
    // The engine must stay pure: it builds for a target with no OS.
    run(
        "cargo",
        &[
            "build",
            "-p",
            "ratecard-engine",
            "--target",
            "wasm32-unknown-unknown",
        ],
        &[],
    )?;
    // Rating is usable without the plugin runtime (no wasmtime in the build).
    run(
        "cargo",
        &[
            "check",
            "-p",
            "ratecard-host",
            "--lib",
            "--no-default-features",
        ],
        &[],
    )?;
    run("cargo", &["fmt", "--all", "--check"], &[])?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The browser package is built once (into target/), checked against the committed web/pkg,
    // and its Node and Chromium suites run while the Rust tests do.
    let web_suites = web::start_tests()?;
    // Libraries, binaries, integration tests and doc tests. Benchmarks are compiled by clippy
    // above and run by `cargo xtask bench`, never as tests.
    let rust_tests = run("cargo", &["test", "--workspace"], &[]);
    let web_result = web_suites.finish();
    rust_tests?;
    web_result?;
    if std::path::Path::new("fuzz/Cargo.toml").exists() {
        run(
            "cargo",
            &["test", "--manifest-path", "fuzz/Cargo.toml"],
            &[],
        )?;
    }
    Ok(())
}

fn bench() -> Result<()> {
    setup()?;
    run(
        "cargo",
        &["bench", "-p", "ratecard-engine", "--bench", "quote"],
        &[],
    )?;
    run(
        "cargo",
        &["bench", "-p", "ratecard-host", "--bench", "rate"],
        &[],
    )?;
    Ok(())
}

/// `cargo xtask bench-duckdb [args]`: `ratecard rate` vs DuckDB on the same events (issue 13).
/// Builds `ratecard` in release, then runs `benches/duckdb/bench.py` with `args` (`--events N`,
/// `--rounds R`, `--help`); the script installs the `duckdb` Python package if it is missing.
fn bench_duckdb(args: &[String]) -> Result<()> {
    run("cargo", &["build", "--release", "-p", "ratecard-host"], &[])?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let script = root.join("benches/duckdb/bench.py");
    let script = script
        .to_str()
        .context("a UTF-8 path to benches/duckdb/bench.py")?;
    let mut python_args = vec![script];
    python_args.extend(args.iter().map(String::as_str));
    run("python3", &python_args, &[])
}
