//! The browser package and pages: set-up of their tools, the package build, its tests.
//!
//! - `setup`: wasm-bindgen-cli and wasm-pack at the pinned versions (`cargo install --locked`),
//!   the npm packages of `web/` (`npm ci`, from its lockfile: binaryen's wasm-opt,
//!   playwright-core, decimal.js, typescript), Debian's Chromium. Each step checks first.
//! - `package(out)`: `crates/wasm` built by wasm-pack (`--target web`, profile `wasm-release`,
//!   timezones filtered to `crates/wasm/timezones.txt`, source paths remapped so the bytes do not
//!   depend on where the checkout is), wasm-opt -Oz, the TypeScript declarations of the formats,
//!   and a size report.
//! - `build`: `package` into `target/web-pkg`, then copied to the committed `web/pkg`.
//! - `start_tests`: `package` once, the check that `web/pkg` is that build byte for byte, then the
//!   Node suites (`web/test/*.test.mjs`: vectors, binding, size, declarations, browser
//!   end-to-end against `ratecard serve`) in the background while the Rust tests run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};

use crate::run;

const WASM_BINDGEN_VERSION: &str = "0.2.129";
const WASM_PACK_VERSION: &str = "0.15.1";
const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, or `target/` of the workspace).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("a UTF-8 path: {}", path.display()))
}

/// Installs what the package build and the browser tests need. Idempotent.
pub fn setup() -> Result<()> {
    // apt and npm wait on the network: let them run while cargo compiles the CLIs.
    let system = std::thread::spawn(|| -> Result<()> {
        chromium()?;
        npm_packages()
    });
    let tools = cargo_tool("wasm-bindgen", "wasm-bindgen-cli", WASM_BINDGEN_VERSION)
        .and_then(|()| cargo_tool("wasm-pack", "wasm-pack", WASM_PACK_VERSION));
    let system = system
        .join()
        .map_err(|_| anyhow::anyhow!("the set-up thread panicked"))?;
    tools?;
    system
}

/// `cargo install --locked CRATE --version VERSION` unless `binary --version` already says it.
fn cargo_tool(binary: &str, krate: &str, version: &str) -> Result<()> {
    let present = Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version));
    if present {
        return Ok(());
    }
    run(
        "cargo",
        &["install", "--locked", krate, "--version", version],
        &[],
    )
}

fn chromium() -> Result<()> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    run("apt-get", &["update"], &[])?;
    run("apt-get", &["install", "-y", "chromium"], &[])
}

/// `npm ci` in web/ when node_modules is missing or was installed from another lockfile.
fn npm_packages() -> Result<()> {
    let web = root().join("web");
    let lock =
        std::fs::read(web.join("package-lock.json")).context("reading web/package-lock.json")?;
    let stamp = web.join("node_modules/.ratecard-lock");
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    if Command::new("npm").arg("--version").output().is_err() {
        run("apt-get", &["install", "-y", "nodejs", "npm"], &[])?;
    }
    eprintln!("$ (cd web && npm ci)");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&web)
        .status()
        .context("starting npm")?;
    if !status.success() {
        bail!("`npm ci` in web/ failed with {status}");
    }
    std::fs::write(&stamp, lock).context("writing the npm stamp")
}

/// The regex of `crates/wasm/timezones.txt` for chrono-tz's build-time filter.
fn timezone_filter() -> Result<String> {
    let list = std::fs::read_to_string(root().join("crates/wasm/timezones.txt"))
        .context("reading crates/wasm/timezones.txt")?;
    let zones: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|zone| zone.replace('.', "\\.").replace('+', "\\+"))
        .collect();
    Ok(format!("^({})$", zones.join("|")))
}

/// Builds the browser package into `out` (emptied first).
pub fn package(out: &Path) -> Result<()> {
    let root = root();
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    // The same bytes from any checkout: file paths in panic locations are remapped.
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    rustflags.push_str(&format!(
        " --remap-path-prefix={}=/ratecard --remap-path-prefix={}=/cargo",
        text(&root)?,
        text(&cargo_home)?
    ));
    let filter = timezone_filter()?;
    let out_text = text(out)?;
    run(
        "wasm-pack",
        &[
            "build",
            &text(&root.join("crates/wasm"))?,
            "--target",
            "web",
            "--mode",
            "no-install",
            "--no-opt",
            "--no-pack",
            "--no-gitignore",
            "--profile",
            "wasm-release",
            "--out-dir",
            &out_text,
        ],
        &[
            ("RUSTFLAGS", rustflags.trim()),
            ("CHRONO_TZ_TIMEZONE_FILTER", &filter),
        ],
    )?;
    let wasm = text(&out.join("ratecard_wasm_bg.wasm"))?;
    run(
        &text(&root.join("web/node_modules/.bin/wasm-opt"))?,
        &[
            "-Oz",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            &wasm,
            "-o",
            &wasm,
        ],
        &[],
    )?;
    let types = node_output(&["web/tools/schema-dts.mjs", "docs/schema"])?;
    std::fs::write(out.join("ratecard_types.d.ts"), types).context("writing the declarations")?;
    // What the size is and what takes it (function names are in cargo's output, before
    // wasm-bindgen and wasm-opt strip them).
    let named = target_dir().join("wasm32-unknown-unknown/wasm-release/ratecard_wasm.wasm");
    run(
        "node",
        &[
            &text(&root.join("web/tools/size.mjs"))?,
            &wasm,
            &text(&named)?,
        ],
        &[],
    )
}

fn node_output(args: &[&str]) -> Result<Vec<u8>> {
    let output = Command::new("node")
        .args(args)
        .current_dir(root())
        .output()
        .context("starting node")?;
    if !output.status.success() {
        bail!(
            "`node {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// `cargo xtask web-build`: the package, built fresh, becomes the committed `web/pkg`.
pub fn build() -> Result<()> {
    setup()?;
    let built = target_dir().join("web-pkg");
    package(&built)?;
    let committed = root().join("web/pkg");
    if committed.exists() {
        std::fs::remove_dir_all(&committed).context("emptying web/pkg")?;
    }
    std::fs::create_dir_all(&committed).context("creating web/pkg")?;
    for name in files(&built)? {
        std::fs::copy(built.join(&name), committed.join(&name))
            .with_context(|| format!("copying {name}"))?;
    }
    eprintln!("web/pkg is the fresh build: commit it with the sources it came from");
    Ok(())
}

fn files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The committed package must be the fresh build, file for file and byte for byte.
fn check_committed(built: &Path) -> Result<()> {
    let committed = root().join("web/pkg");
    let (fresh, kept) = (files(built)?, files(&committed).unwrap_or_default());
    let mut stale = Vec::new();
    for name in fresh.iter().chain(&kept) {
        let a = std::fs::read(built.join(name)).ok();
        let b = std::fs::read(committed.join(name)).ok();
        if a != b && !stale.contains(name) {
            stale.push(name.clone());
        }
    }
    if !stale.is_empty() {
        bail!(
            "web/pkg is not the build of the current sources ({} differ): run `cargo xtask web-build` and commit web/pkg",
            stale.join(", ")
        );
    }
    eprintln!("web/pkg is up to date with the sources");
    Ok(())
}

/// The web suites running in the background.
#[derive(Debug)]
pub struct WebTests {
    check: Result<()>,
    node: JoinHandle<Result<()>>,
}

/// Builds the package once, checks the committed copy, prepares the native outputs and the
/// `ratecard` binary, then starts the Node suites.
pub fn start_tests() -> Result<WebTests> {
    let root = root();
    let built = target_dir().join("web-pkg");
    package(&built)?;
    let check = check_committed(&built);
    run(
        "cargo",
        &[
            "build",
            "-p",
            "ratecard-host",
            "--bin",
            "ratecard",
            "-p",
            "ratecard-wasm",
            "--example",
            "native_vectors",
        ],
        &[],
    )?;
    // Its build script makes the sample plugin components the console's upload test sends
    // (web/test/portal.test.mjs finds them under target/debug/build/).
    run("cargo", &["build", "-p", "ratecard-test-plugins"], &[])?;
    let native = Command::new(target_dir().join("debug/examples/native_vectors"))
        .current_dir(&root)
        .output()
        .context("running native_vectors")?;
    if !native.status.success() {
        bail!(
            "native_vectors failed: {}",
            String::from_utf8_lossy(&native.stderr)
        );
    }
    let native_file = target_dir().join("web-native-vectors.json");
    std::fs::write(&native_file, &native.stdout).context("writing the native vectors")?;
    let envs = [
        ("RATECARD_WASM_PKG", text(&built)?),
        ("RATECARD_NATIVE_VECTORS", text(&native_file)?),
        ("RATECARD_BIN", text(&target_dir().join("debug/ratecard"))?),
    ];
    let node = std::thread::spawn(move || -> Result<()> {
        let log = target_dir().join("web-tests.log");
        eprintln!("$ node --test web/test/ (in the background, output in target/web-tests.log)");
        let output = Command::new("node")
            .args(["--test", "--test-concurrency=4", "web/test/"])
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&root)
            .output()
            .context("starting node --test")?;
        let mut all = output.stdout.clone();
        all.extend_from_slice(&output.stderr);
        std::fs::write(&log, &all).context("writing target/web-tests.log")?;
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&all));
            bail!(
                "the web suites failed with {} (see target/web-tests.log)",
                output.status
            );
        }
        Ok(())
    });
    Ok(WebTests { check, node })
}

impl WebTests {
    /// Waits for the Node suites; prints their summary.
    pub fn finish(self) -> Result<()> {
        let node = self
            .node
            .join()
            .map_err(|_| anyhow::anyhow!("the web test thread panicked"))?;
        if let Ok(log) = std::fs::read_to_string(target_dir().join("web-tests.log")) {
            // node's closing lines: `# tests N`, `# pass N`, `# fail N`, …
            let summary: Vec<&str> = log.lines().filter(|l| l.starts_with("# ")).collect();
            eprintln!("web suites (node --test):\n{}", summary.join("\n"));
        }
        self.check?;
        node
    }
}

/// `cargo xtask bench-web`: the binding against decimal.js in Node, same run; then the pricing
/// page's time to first estimate and the binding's latency inside headless Chromium.
pub fn bench() -> Result<()> {
    setup()?;
    let built = target_dir().join("web-pkg");
    package(&built)?;
    check_committed(&built)?;
    run(
        "node",
        &[&text(&root().join("web/bench/quote.mjs"))?],
        &[("RATECARD_WASM_PKG", &text(&built)?)],
    )?;
    run(
        "cargo",
        &["build", "-p", "ratecard-host", "--bin", "ratecard"],
        &[],
    )?;
    run(
        "node",
        &[
            &text(&root().join("web/bench/page.mjs"))?,
            &text(&target_dir().join("debug/ratecard"))?,
        ],
        &[],
    )
}
