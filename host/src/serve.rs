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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the server runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("the listening address")?;
        // Written at once (tests and scripts wait for this line).
        println!("Ratecard pages on http://{addr}/ (pricing), /quote.html, /editor.html");
        println!(
            "serving {} and {}",
            shown(&dirs.web).display(),
            shown(&dirs.examples).display()
        );
        axum::serve(listener, router(dirs)).await.context("serving")
    })
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
