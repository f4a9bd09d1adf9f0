//! The `nym-localnet` binary starts a network, prints it as JSON, serves the
//! directory, and exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{bounded, init_tracing, wait_until};

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_json_and_stops_on_sigterm() {
    init_tracing();
    bounded(Duration::from_secs(30), async {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nym-localnet"))
            .args([
                "--json",
                "--no-delay",
                "--gateways",
                "1",
                "--mixnodes-per-layer",
                "2",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nym-localnet");
        let stdout = child.stdout.take().expect("stdout");
        let text = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("line");
                let end = line == "}";
                text.push_str(&line);
                text.push('\n');
                if end {
                    break;
                }
            }
            text
        })
        .await
        .expect("reader");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON summary");
        let nodes = doc["nodes"].as_array().expect("nodes");
        assert_eq!(nodes.len(), 7);
        assert_eq!(nodes.iter().filter(|n| n["role"] == "gateway").count(), 1);
        assert!(nodes
            .iter()
            .any(|n| n["ws_url"].as_str().is_some_and(|u| u.starts_with("ws://"))));
        let topology = doc["topology_file"].as_str().expect("path").to_string();
        assert!(std::path::Path::new(&topology).exists());

        let api = doc["api_url"].as_str().expect("url");
        let addr: std::net::SocketAddr = api
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("api address");
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());

        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let mut exit = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                exit = child.try_wait().expect("wait");
                exit.is_some()
            })
            .await,
            "exited after SIGTERM"
        );
        assert!(exit.is_some_and(|s| s.success()));
        assert!(
            !std::path::Path::new(&topology).exists(),
            "temporary files removed"
        );
    })
    .await;
}
