//! What the server's tests share: a fresh store on either backend, each test run on both,
//! `ratecard serve` as a child process, and one-request HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use ratecard_host::server::Database;

pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub key: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

pub fn serve(data_dir: &std::path::Path, demo: bool) -> Serve {
    serve_with(data_dir, if demo { &["--demo"] } else { &[] })
}

pub fn serve_with(data_dir: &std::path::Path, args: &[&str]) -> Serve {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ratecard"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RATECARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("ratecard serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut addr, mut key) = (None, None);
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(
            lines.read_line(&mut line).expect("a line") > 0,
            "serve exited early"
        );
        if let Some(rest) = line.strip_prefix("operator key (demo): ") {
            key = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Ratecard pages on http://") {
            addr = rest.split('/').next().and_then(|a| a.parse().ok());
        }
    }
    Serve {
        child,
        addr: addr.expect("an address"),
        key,
    }
}

pub fn get(addr: SocketAddr, path: &str, key: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text[9..12].parse().expect("status");
    (
        status,
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned()),
    )
}

pub fn post(addr: SocketAddr, path: &str, key: &str, body: &str) -> std::io::Result<(u16, String)> {
    send(addr, "POST", path, key, body)
}

/// One request with a JSON body over a fresh connection: status and body.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((
        status,
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned()),
    ))
}

pub fn put(addr: SocketAddr, path: &str, key: &str, body: &str) -> std::io::Result<(u16, String)> {
    send(addr, "PUT", path, key, body)
}

/// Events of a code no metric selects: the preview notes how many there are, exactly.
pub fn unbilled(addr: SocketAddr, key: &str) -> u64 {
    // The preview of today's period (dates are local; UTC for acme).
    let date = utc_date();
    let (status, body) = get(
        addr,
        &format!("/v1/customers/acme/invoice?date={date}"),
        key,
    );
    assert_eq!(status, 200, "{body}");
    let invoice: serde_json::Value = serde_json::from_str(&body).expect("json");
    invoice["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| {
            n.as_str()?
                .strip_suffix(" events not billed: matching no metric")
        })
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum()
}

pub fn utc_date() -> String {
    let output = Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .expect("date");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Every final invoice, as `GET /v1/invoices` lists them.
pub fn invoices(addr: SocketAddr, key: &str) -> Vec<serde_json::Value> {
    let (status, body) = get(addr, "/v1/invoices", key);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    list["invoices"].as_array().expect("invoices").clone()
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store: a data directory under the system's temporary directory, or a new
/// database in this process's PostgreSQL cluster.
pub fn data_dir(backend: Backend, name: &str) -> Database {
    match backend {
        Backend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("ratecard-store-{name}-{}", std::process::id()));
            drop(std::fs::remove_dir_all(&dir));
            Database::Sqlite(dir)
        }
        Backend::Postgres => Database::Postgres(ratecard_tests::postgres::fresh_database(name)),
    }
}

/// Removes a SQLite data directory (a PostgreSQL database goes with its cluster).
pub fn remove(database: &Database) {
    if let Database::Sqlite(dir) = database {
        drop(std::fs::remove_dir_all(dir));
    }
}

/// Each test, once per backend: `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::common::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::common::Backend::Postgres).await
            })*
        }
    };
}

/// One async HTTP/1.1 request over a fresh loopback connection (for tests that serve the API
/// in-process): status, head and body as text.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let content_type = content_type
        .map(|t| format!("Content-Type: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8(response).expect("UTF-8");
    let status: u16 = text[9..12].parse().expect("a status");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}
