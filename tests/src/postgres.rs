//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, started on a
//! loopback port and a Unix socket in that directory, stopped when the test process ends.
//!
//! PostgreSQL refuses to run as root: as root the cluster is made and run as the `postgres`
//! user (`runuser`); as anyone else, as that user. The binaries are found in
//! `RATECARD_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else on `PATH` (`cargo
//! xtask setup` installs the distribution's package where none is). No mock: a missing
//! PostgreSQL fails the test that needs one, with what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Data directory, socket and log.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The cluster of this test process, started on first use and stopped when the process ends
/// (a watchdog stops it even when the process is killed).
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("{e}")))
}

/// A new, empty database in the [`shared`] cluster: its URL (`postgres://…`).
pub fn fresh_database(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    shared().create_database(&format!("{name}_{n}"))
}

impl Cluster {
    /// `initdb` and start a cluster (trust authentication, user `ratecard`, loopback only).
    pub fn start() -> Result<Cluster, String> {
        let bin = bin_dir().ok_or(
            "PostgreSQL is not installed (no initdb in RATECARD_PG_BIN, \
             /usr/lib/postgresql/*/bin or PATH): run `cargo xtask setup`",
        )?;
        let as_postgres = is_root();
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ratecard-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        drop(std::fs::remove_dir_all(&dir));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        }
        let cluster = Cluster {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
        };
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-A",
                "trust",
                "-U",
                "ratecard",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        // Stop the cluster when this process ends, however it ends.
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = cluster.shell_command("pg_ctl", &["stop", "-m", "immediate", "-D", &cluster.data().display().to_string()]),
            dir = cluster.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the cluster's watchdog: {e}"))?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off \
             -c synchronous_commit=on -c shared_buffers=128MB",
            cluster.port,
            cluster.dir.display()
        );
        cluster.run_tool(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &cluster.data().display().to_string(),
                "-l",
                &cluster.dir.join("log").display().to_string(),
                "-o",
                &options,
            ],
        )?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://ratecard@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`: its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.run_tool(
            "createdb",
            &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "ratecard", name],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.url(name)
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command)
    }

    fn shell_command(&self, tool: &str, args: &[&str]) -> String {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let path = self.bin.join(tool);
        if self.as_postgres {
            format!("runuser -u postgres -- '{}' {}", path.display(), quoted.join(" "))
        } else {
            format!("'{}' {}", path.display(), quoted.join(" "))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        drop(self.run_tool(
            "pg_ctl",
            &["stop", "-m", "fast", "-D", &self.data().display().to_string()],
        ));
        drop(std::fs::remove_dir_all(&self.dir));
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Where `initdb` and `pg_ctl` are.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RATECARD_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find(|dir| Path::new(dir).join("initdb").is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
