//! Compiles the guest crates for `wasm32-unknown-unknown` with a nested cargo (its own target
//! directory, so it never waits on the outer build's lock), turns each core module into a
//! component with `wit-component`, and writes `plugins.rs` with one path constant per component.
//!
//! Needs the target: `rustup target add wasm32-unknown-unknown` (`cargo xtask test` runs it).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant, package) of the guests to build.
const GUESTS: &[(&str, &str)] = &[
    ("P95_BANDWIDTH", "p95-bandwidth"),
    ("PEAK_SESSIONS", "peak-sessions"),
    ("GPU_SECONDS", "gpu-seconds"),
    ("FLEET_KM", "fleet-km"),
    ("TOU_ELECTRICITY", "tou-electricity"),
    ("HOSTILE", "ratecard-guest-hostile"),
    ("WASI_IMPORT", "ratecard-guest-wasi-import"),
    ("WRONG_EXPORTS", "ratecard-guest-wrong-exports"),
    ("RAW", "ratecard-guest-raw"),
    ("MISTYPED", "ratecard-guest-mistyped"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for watched in [
        "crates/plugin-sdk",
        "examples/plugins",
        "crates/test-plugins/guests",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let target_dir = out_dir.join("guest-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Small, fast guests without debug info; the workspace's release profile keeps line tables.
        .args(["--config", "profile.release.debug=false"])
        .args(["--config", "profile.release.strip=true"])
        .args(["--config", "profile.release.lto=true"])
        .args(["--config", "profile.release.codegen-units=1"])
        .args(["--config", "profile.release.panic=\"abort\""])
        // A 128 KiB shadow stack instead of rustc's 1 MiB, and 128-bit SIMD: the flags of
        // `ratecard plugin build` (`GUEST_RUSTFLAGS` in `host/src/plugin_cli.rs`); and the
        // registry's sources named without this machine's cargo home (panic locations keep
        // them), so a component is the same bytes wherever it is built: the demo's committed
        // components (`examples/plugins/dist/`) are checked against these builds.
        .args([
            "--config",
            &format!(
                "target.wasm32-unknown-unknown.rustflags=[\"-C\", \"link-arg=-zstack-size=131072\", \"-C\", \"target-feature=+simd128\", \"--remap-path-prefix={}=/cargo\"]",
                cargo_home().display()
            ),
        ]);
    for (_, package) in GUESTS {
        command.args(["-p", package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host, not for guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build the guest plugins");
    if !status.success() {
        panic!(
            "building the guest plugins failed (is the target installed? \
             `rustup target add wasm32-unknown-unknown`)"
        );
    }

    let mut constants = String::new();
    let release = target_dir.join("wasm32-unknown-unknown/release");
    for (constant, package) in GUESTS {
        let core = release.join(format!("{}.wasm", package.replace('-', "_")));
        let component = componentize(&core);
        let path = out_dir.join(format!("{package}.wasm"));
        write_if_changed(&path, &component);
        write_constant(&mut constants, constant, &path);
    }

    // A plugin whose core module declares a table far beyond any sane limit.
    let hostile_core = fs::read(release.join("ratecard_guest_hostile.wasm")).unwrap();
    let big_table = componentize_bytes(&grow_tables(&hostile_core, 10_000_000));
    let path = out_dir.join("big-table.wasm");
    write_if_changed(&path, &big_table);
    write_constant(&mut constants, "BIG_TABLE", &path);

    // A plugin whose `table` attack grows its function table at run time (`table.grow` in a
    // loop), with no maximum declared: only the host's table limit stops it.
    let table_grow = componentize_bytes(&table_grow_bomb(&hostile_core, TABLE_GROW_MARK));
    let path = out_dir.join("table-grow.wasm");
    write_if_changed(&path, &table_grow);
    write_constant(&mut constants, "TABLE_GROW", &path);

    // A valid plugin carrying 16 MiB of custom section: rejected on size alone.
    let mut huge = fs::read(out_dir.join("ratecard-guest-hostile.wasm")).unwrap();
    append_custom_section(&mut huge, "ballast", &vec![0x5a; 16 << 20]);
    let path = out_dir.join("huge-component.wasm");
    write_if_changed(&path, &huge);
    write_constant(&mut constants, "HUGE_COMPONENT", &path);

    write_if_changed(&out_dir.join("plugins.rs"), constants.as_bytes());
}

/// Cargo's home: `CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent-cargo-home"))
}

fn write_constant(constants: &mut String, constant: &str, path: &Path) {
    writeln!(
        constants,
        "pub const {constant}: &str = {:?};",
        path.display().to_string()
    )
    .unwrap();
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).unwrap();
    }
}

fn componentize(core: &Path) -> Vec<u8> {
    let bytes = fs::read(core).unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));
    componentize_bytes(&bytes)
}

fn componentize_bytes(core: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("cannot make a component: {e:?}"))
}

/// Rewrites every table of a core module to start with `minimum` elements.
fn grow_tables(core: &[u8], minimum: u64) -> Vec<u8> {
    use wasm_encoder::reencode::{Reencode, RoundtripReencoder};

    struct BigTables(u64);
    impl Reencode for BigTables {
        type Error = std::convert::Infallible;
        fn table_type(
            &mut self,
            table_ty: wasmparser::TableType,
        ) -> Result<wasm_encoder::TableType, wasm_encoder::reencode::Error<Self::Error>> {
            let mut table = RoundtripReencoder.table_type(table_ty)?;
            table.minimum = table.minimum.max(self.0);
            table.maximum = None;
            Ok(table)
        }
    }
    let mut module = wasm_encoder::Module::new();
    BigTables(minimum)
        .parse_core_module(&mut module, wasmparser::Parser::new(0), core)
        .expect("cannot rewrite the hostile module");
    module.finish()
}

/// `TABLE_GROW_MARK` in `guests/hostile/src/lib.rs`.
const TABLE_GROW_MARK: i32 = 4_099;

/// Rewrites the hostile core module so that `i32.const mark; memory.grow 0` (its `table` attack)
/// becomes `ref.null func; i32.const mark; table.grow 0`, and drops every table's maximum.
/// Panics unless exactly one such `memory.grow` is found.
fn table_grow_bomb(core: &[u8], mark: i32) -> Vec<u8> {
    use wasm_encoder::reencode::{Reencode, RoundtripReencoder, utils};
    use wasm_encoder::{Instruction, RefType};

    struct TableGrow {
        mark: i32,
        rewritten: usize,
    }
    impl Reencode for TableGrow {
        type Error = std::convert::Infallible;
        fn table_type(
            &mut self,
            table_ty: wasmparser::TableType,
        ) -> Result<wasm_encoder::TableType, wasm_encoder::reencode::Error<Self::Error>> {
            let mut table = RoundtripReencoder.table_type(table_ty)?;
            table.maximum = None;
            Ok(table)
        }
        fn parse_function_body(
            &mut self,
            code: &mut wasm_encoder::CodeSection,
            func: wasmparser::FunctionBody<'_>,
        ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
            let mut function = self.new_function_with_parsed_locals(&func)?;
            let mut reader = func.get_operators_reader()?;
            let mut instructions = Vec::new();
            while !reader.eof() {
                instructions.push(utils::parse_instruction(self, &mut reader)?);
            }
            let mut i = 0;
            while i < instructions.len() {
                match (&instructions[i], instructions.get(i + 1)) {
                    (Instruction::I32Const(n), Some(Instruction::MemoryGrow(0)))
                        if *n == self.mark =>
                    {
                        function.instruction(&Instruction::RefNull(RefType::FUNCREF.heap_type));
                        function.instruction(&Instruction::I32Const(*n));
                        function.instruction(&Instruction::TableGrow(0));
                        self.rewritten += 1;
                        i += 2;
                    }
                    (instruction, _) => {
                        function.instruction(instruction);
                        i += 1;
                    }
                }
            }
            code.function(&function);
            Ok(())
        }
    }
    let mut module = wasm_encoder::Module::new();
    let mut rewrite = TableGrow { mark, rewritten: 0 };
    rewrite
        .parse_core_module(&mut module, wasmparser::Parser::new(0), core)
        .expect("cannot rewrite the hostile module");
    assert_eq!(
        rewrite.rewritten, 1,
        "expected one `i32.const {mark}; memory.grow 0` in the hostile module"
    );
    module.finish()
}

fn append_custom_section(binary: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut section = Vec::new();
    leb128(&mut section, name.len() as u64);
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(payload);
    binary.push(0);
    leb128(binary, section.len() as u64);
    binary.extend_from_slice(&section);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
