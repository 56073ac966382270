//! `ratecard serve` as a process: `--demo` on a temporary data directory, the API with the
//! printed key, then SIGKILL and a restart on the same store: everything acknowledged is there.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

struct Serve {
    child: Child,
    addr: SocketAddr,
    key: Option<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        drop(self.child.kill());
        drop(self.child.wait());
    }
}

fn serve(data_dir: &std::path::Path, demo: bool) -> Serve {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ratecard"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if demo {
        command.arg("--demo");
    }
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

fn get(addr: SocketAddr, path: &str, key: &str) -> (u16, String) {
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

#[test]
fn the_demo_serves_the_api_and_its_store_survives_a_kill() {
    let dir = std::env::temp_dir().join(format!("ratecard-serve-{}", std::process::id()));
    drop(std::fs::remove_dir_all(&dir));
    let first = serve(&dir, true);
    let key = first.key.clone().expect("the demo prints a key");
    let (status, plans) = get(first.addr, "/v1/plans", &key);
    assert_eq!(status, 200, "{plans}");
    let plans: serde_json::Value = serde_json::from_str(&plans).expect("json");
    let n_plans = plans["plans"].as_array().expect("plans").len();
    assert!(n_plans >= 3);
    assert_eq!(get(first.addr, "/v1/plans", "wrong").0, 401);
    let (status, page) = get(first.addr, "/", &key);
    assert_eq!(status, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));
    // SIGKILL: no shutdown at all.
    let mut first = first;
    first.child.kill().expect("kill");
    drop(first.child.wait());
    // Restarted without --demo on the same store: nothing reseeded, nothing lost; the key made
    // by the first run still opens the API.
    let second = serve(&dir, false);
    assert!(second.key.is_none());
    let (status, plans) = get(second.addr, "/v1/plans", &key);
    assert_eq!(status, 200, "{plans}");
    let plans: serde_json::Value = serde_json::from_str(&plans).expect("json");
    assert_eq!(plans["plans"].as_array().expect("plans").len(), n_plans);
    drop(second);
    drop(std::fs::remove_dir_all(&dir));
}
