//! `ratecard serve`: the browser pages (`web/`: pricing page, quote builder, plan editor, and the
//! committed wasm package they compute with) and the example plans and usage, on
//! `127.0.0.1:8080` by default. The pages price everything in the browser; this route only hands
//! out files. The server issue grows this router into the API server (axum on tokio).
//!
//! Routes: `/plans/index.json` (the example plans' file names), `/plans/NAME.json`,
//! `/usage/NAME.json` (from `examples/`), and every other path from the web directory (`/` is
//! `index.html`). Paths with `..`, hidden names or `node_modules` are refused; nothing outside
//! the two directories is read.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ratecard_engine::plan::Plan;
use ratecard_engine::plugin::NoPlugins;
use ratecard_host::server::{Database, Server, SystemClock, api, demo};

/// Prints a line on standard output; a closed standard output (the reader went away) is
/// ignored: the server keeps serving.
macro_rules! say {
    ($($arg:tt)*) => {
        drop(std::io::Write::write_fmt(
            &mut std::io::stdout().lock(),
            format_args!("{}\n", format_args!($($arg)*)),
        ))
    };
}

/// Where the pages and the examples are, and where to listen.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The pages (default: `web/` of the source tree this binary was built from, else `./web`).
    #[arg(long)]
    web: Option<PathBuf>,
    /// The example plans and usage (`plans/`, `usage/`; default: `examples/` beside `web/`).
    #[arg(long)]
    examples: Option<PathBuf>,
    /// Where the store lives (`ratecard.db`, SQLite in WAL mode; created if missing).
    #[arg(long, default_value = "ratecard-data")]
    data_dir: PathBuf,
    /// A PostgreSQL database instead (`postgres://user@host:port/name`, or
    /// `postgres:///name?host=/socket/dir`): several replicas may serve one database. Also
    /// from `RATECARD_DATABASE_URL`, which keeps a password out of the process list.
    #[arg(
        long,
        value_name = "URL",
        env = "RATECARD_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// How long after a period ends its late events are still accepted (and it cannot be
    /// closed before), in hours.
    #[arg(long, default_value_t = 72)]
    grace_hours: u32,
    /// How often the dunning step runner runs (overdue invoices' reminders and
    /// uncollectible marks, into the outbox), in seconds; 0: only on `POST /v1/dunning/run`.
    #[arg(long, default_value_t = 300)]
    dunning_every_secs: u64,
    /// Seed an empty store with the example plans, customers in six timezones and this month's
    /// events, and print an operator key for the API.
    #[arg(long)]
    demo: bool,
}

#[derive(Debug)]
struct Dirs {
    web: PathBuf,
    examples: PathBuf,
}

/// The directory a default names: the source tree's, or the working directory's.
fn default_dir(name: &str) -> PathBuf {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    if built_from.is_dir() {
        built_from
    } else {
        PathBuf::from(name)
    }
}

/// Serves until the process is stopped.
pub fn run(args: ServeArgs) -> Result<()> {
    let dirs = Dirs {
        web: args.web.unwrap_or_else(|| default_dir("web")),
        examples: args.examples.unwrap_or_else(|| default_dir("examples")),
    };
    for dir in [&dirs.web, &dirs.examples] {
        anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    }
    let shown = |dir: &Path| std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    runtime.block_on(async move {
        let database = Database::parse(args.database.as_deref(), args.data_dir.clone())
            .map_err(anyhow::Error::msg)?;
        let server = Server::open_database(&database, Box::new(SystemClock), &NoPlugins)
            .await
            .with_context(|| format!("opening the store ({})", store_name(&database)))?
            .with_grace_ms(i64::from(args.grace_hours) * 3_600_000);
        // Uploaded plugins run sandboxed in wasmtime (the runtime's default limits).
        let runtime = ratecard_host::plugins::PluginRuntime::new(
            ratecard_host::plugins::RuntimeConfig::default(),
        )
        .context("starting the plugin runtime")?;
        let plugins: &'static ratecard_host::server::plugins::ServerPlugins = Box::leak(Box::new(
            ratecard_host::server::plugins::ServerPlugins::new(runtime),
        ));
        let server = server
            .with_plugins(plugins)
            .await
            .context("loading the active plugins")?;
        if args.demo {
            if server.plans().is_empty() {
                let seeded = demo::seed(&server, example_plans(&dirs.examples)?)
                    .await
                    .context("seeding the demo")?;
                say!(
                    "demo: {} plans, {} customers, {} events this month",
                    seeded.n_plans, seeded.n_customers, seeded.n_events
                );
                if let Some(plugins) = demo_plugins(&dirs.examples)? {
                    let (references, n_events) = demo::seed_plugins(&server, plugins)
                        .await
                        .context("seeding the demo's plugins")?;
                    say!(
                        "demo: plugins {} active, customer `{}` on a plan using them ({n_events} events)",
                        references.join(", "),
                        demo::PLUGIN_CUSTOMER.0
                    );
                }
            }
            let key = server.create_key("demo").await.context("an operator key")?;
            say!("operator key (demo): {key}");
        }
        let server = Arc::new(server);
        // Changes other replicas of the database make (PostgreSQL; at once done on SQLite).
        let follower = server.clone();
        tokio::spawn(async move {
            if let Err(error) = follower.follow_replicas().await {
                tracing::error!(%error, "following other replicas stopped: exiting");
                // A replica that cannot see others' changes could serve stale customers.
                std::process::exit(1);
            }
        });
        if args.dunning_every_secs > 0 {
            tokio::spawn(dunning_loop(
                server.clone(),
                std::time::Duration::from_secs(args.dunning_every_secs),
            ));
        }
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("the listening address")?;
        // Written at once (tests and scripts wait for this line).
        say!(
            "Ratecard pages on http://{addr}/ (pricing), /quote.html, /editor.html; /portal.html (customers), /console.html and /reports.html (operator)"
        );
        say!(
            "API on http://{addr}/v1/ (operator key: `Authorization: Bearer …`), health /healthz; store {}",
            match &database {
                Database::Sqlite(dir) => shown(dir).display().to_string(),
                Database::Postgres(_) => store_name(&database),
            }
        );
        say!("OpenAPI 3.1 document on http://{addr}/openapi.json");
        say!(
            "serving {} and {}",
            shown(&dirs.web).display(),
            shown(&dirs.examples).display()
        );
        let app = router(dirs)
            .merge(api::router(server.clone()))
            .layer(axum::middleware::from_fn(log_request));
        tracing::info!(%addr, store = %store_name(&database), "listening");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")?;
        tracing::info!("stopped: in-flight requests finished");
        server.store().close().await;
        Ok(())
    })
}

/// Runs the dunning steps every `every` (idempotent: a step already run never runs again, so
/// this loop and `POST /v1/dunning/run` can overlap); a failure is logged and retried next time.
async fn dunning_loop(server: Arc<Server>, every: std::time::Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match server.run_dunning().await {
            Ok(ran) if ran.is_empty() => {}
            Ok(ran) => tracing::info!(steps = ran.len(), "dunning run"),
            Err(error) => tracing::warn!(%error, "dunning run failed; retried at the next tick"),
        }
    }
}

/// Structured logs on standard error: `RATECARD_LOG` (e.g. `info`, `ratecard_host=debug`)
/// chooses what, default `info`; `RATECARD_LOG_FORMAT=json` writes one JSON object per line.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RATECARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A second call (tests running several servers in one process) keeps the first.
    let _already = if std::env::var("RATECARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// One log line per request: method, path, status and time taken.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, "request");
    } else {
        tracing::info!(%method, %path, status, micros, "request");
    }
    response
}

/// Resolves on the first SIGINT or SIGTERM: the server stops accepting and finishes the
/// requests in flight; a second signal is the default (exit).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// `ratecard keys create`: a new operator key for the store in `--data-dir`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Makes an operator key and prints it (the only time it is shown: only its SHA-256 is
    /// kept).
    Create {
        /// Where the store lives (as for `ratecard serve`).
        #[arg(long, default_value = "ratecard-data")]
        data_dir: PathBuf,
        /// A PostgreSQL database instead (as for `ratecard serve`).
        #[arg(
            long,
            value_name = "URL",
            env = "RATECARD_DATABASE_URL",
            hide_env_values = true
        )]
        database: Option<String>,
        /// A label to tell keys apart.
        #[arg(long, default_value = "operator")]
        label: String,
    },
}

pub fn keys(args: KeysArgs) -> Result<()> {
    let KeysAction::Create {
        data_dir,
        database,
        label,
    } = args.action;
    let database = Database::parse(database.as_deref(), data_dir).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = Server::open_database(&database, Box::new(SystemClock), &NoPlugins)
            .await
            .with_context(|| format!("opening the store ({})", store_name(&database)))?;
        let key = server.create_key(&label).await.context("an operator key")?;
        say!("{key}");
        server.store().close().await;
        Ok(())
    })
}

/// The example plans (`plans/*.json`), sorted by file name.
/// `examples/demo/`: the committed components (`*.wasm`) and the plan naming them
/// (`colocation.json`); `None` when the directory is not there.
fn demo_plugins(examples: &Path) -> Result<Option<demo::DemoPlugins>> {
    let dir = examples.join("demo");
    let plan_path = dir.join("colocation.json");
    if !plan_path.exists() {
        return Ok(None);
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    paths.sort();
    let components = paths
        .iter()
        .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
        .collect::<Result<_>>()?;
    let text = std::fs::read_to_string(&plan_path)
        .with_context(|| format!("reading {}", plan_path.display()))?;
    let plan = ratecard_engine::json::parse::<Plan>(&text)
        .map_err(|errors| anyhow::anyhow!("{}: {}", plan_path.display(), errors[0]))?;
    Ok(Some(demo::DemoPlugins { components, plan }))
}

fn example_plans(examples: &Path) -> Result<Vec<Plan>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples.join("plans"))
        .with_context(|| format!("reading {}", examples.join("plans").display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ratecard_engine::json::parse::<Plan>(&text)
                .map_err(|errors| anyhow::anyhow!("{}: {}", path.display(), errors[0]))
        })
        .collect()
}

fn router(dirs: Dirs) -> Router {
    Router::new()
        .route("/plans/index.json", get(plan_index))
        .route("/plans/{name}", get(example_plan))
        .route("/usage/{name}", get(example_usage))
        .route("/", get(index))
        .route("/{*path}", get(web_file))
        .with_state(Arc::new(dirs))
}

/// `path` as a relative path of plain names, or `None` (`..`, absolute, hidden, node_modules).
fn safe_relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => {
                let name = name.to_str()?;
                if name.starts_with('.') || name == "node_modules" {
                    return None;
                }
                out.push(name);
            }
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ts") => "text/plain; charset=utf-8",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn file(path: PathBuf) -> Response {
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            );
            // The pages are edited and rebuilt in place: always revalidate.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(_) => not_found(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn index(State(dirs): State<Arc<Dirs>>) -> Response {
    file(dirs.web.join("index.html")).await
}

async fn web_file(State(dirs): State<Arc<Dirs>>, UrlPath(path): UrlPath<String>) -> Response {
    match safe_relative(&path) {
        Some(relative) => file(dirs.web.join(relative)).await,
        None => not_found(),
    }
}

/// A `.json` file name without directories, or `None`.
fn json_name(name: &str) -> Option<PathBuf> {
    safe_relative(name).filter(|p| p.components().count() == 1 && name.ends_with(".json"))
}

async fn example_plan(State(dirs): State<Arc<Dirs>>, UrlPath(name): UrlPath<String>) -> Response {
    match json_name(&name) {
        Some(name) => file(dirs.examples.join("plans").join(name)).await,
        None => not_found(),
    }
}

async fn example_usage(State(dirs): State<Arc<Dirs>>, UrlPath(name): UrlPath<String>) -> Response {
    match json_name(&name) {
        Some(name) => file(dirs.examples.join("usage").join(name)).await,
        None => not_found(),
    }
}

/// The example plans' file names, sorted: `["cloud-storage.json", …]`.
async fn plan_index(State(dirs): State<Arc<Dirs>>) -> Response {
    let mut names = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(dirs.examples.join("plans")).await {
        while let Ok(Some(entry)) = entries.next_entry().await {
            if let Some(name) = entry
                .file_name()
                .to_str()
                .filter(|n| json_name(n).is_some())
            {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut response = serde_json::to_string(&names)
        .unwrap_or_else(|_| "[]".to_owned())
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The store as logs and errors name it: the SQLite data directory, or the PostgreSQL URL
/// without its password.
fn store_name(database: &Database) -> String {
    match database {
        Database::Sqlite(dir) => format!("SQLite in {}", dir.display()),
        Database::Postgres(url) => {
            // `postgres://user:secret@host/db` → `postgres://user:…@host/db`.
            let shown = match (url.find("://"), url.find('@')) {
                (Some(scheme), Some(at)) if scheme + 3 < at => {
                    let credentials = &url[scheme + 3..at];
                    match credentials.find(':') {
                        Some(colon) => format!(
                            "{}{}:…{}",
                            &url[..scheme + 3],
                            &credentials[..colon],
                            &url[at..]
                        ),
                        None => url.clone(),
                    }
                }
                _ => url.clone(),
            };
            format!("PostgreSQL {shown}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert_eq!(
            safe_relative("js/pricing.js"),
            Some(PathBuf::from("js/pricing.js"))
        );
        for refused in [
            "../Cargo.toml",
            "/etc/passwd",
            "js/../../x",
            ".git/config",
            "node_modules/x.js",
            "",
        ] {
            assert_eq!(safe_relative(refused), None, "{refused}");
        }
        assert_eq!(json_name("a/b.json"), None);
        assert_eq!(
            json_name("saas-api.json"),
            Some(PathBuf::from("saas-api.json"))
        );
        assert_eq!(json_name("x.txt"), None);
    }
}
