//! Child processes: the localnet and nymd children.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("own path")?;
    let dir = exe.parent().context("own directory")?;
    Ok(dir.join(name))
}

/// `RUST_LOG` of the nymd and exit children: `NYMD_BENCH_CHILD_LOG` if set
/// (to see why a connection closed, say), else errors only.
pub fn child_log() -> String {
    std::env::var("NYMD_BENCH_CHILD_LOG").unwrap_or_else(|_| "error".into())
}

/// The `nym-localnet` process.
#[derive(Debug)]
pub struct LocalnetProc {
    child: Child,
    /// Its nym-api URL.
    pub api_url: String,
    /// Its pid.
    pub pid: u32,
}

impl LocalnetProc {
    /// Start `nym-localnet --no-delay --json` (and `--sink`) under `nice`.
    pub async fn start(
        bin: Option<&Path>,
        nice: u8,
        mixnodes_per_layer: usize,
        sink: bool,
    ) -> anyhow::Result<Self> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => sibling("nym-localnet")?,
        };
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p nymd-localnet` \
                 (or pass --localnet-bin)",
                bin.display()
            );
        }
        let mut cmd = Command::new("nice");
        cmd.arg("-n")
            .arg(nice.to_string())
            .arg(&bin)
            .args(["--no-delay", "--json", "--gateways", "2"])
            .arg("--mixnodes-per-layer")
            .arg(mixnodes_per_layer.to_string())
            .args(if sink { &["--sink"][..] } else { &[][..] })
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawning nym-localnet")?;
        let pid = child.id().context("localnet pid")?;
        let stdout = child.stdout.take().context("localnet stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut text = String::new();
        let doc: Value = loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .context("localnet did not start in 60 s")?
                .context("reading localnet output")?
                .context("localnet exited")?;
            text.push_str(&line);
            text.push('\n');
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                break v;
            }
        };
        let api_url = doc
            .get("api_url")
            .and_then(Value::as_str)
            .context("localnet api_url")?
            .to_string();
        // Keep draining its stdout so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            api_url,
            pid,
        })
    }

    /// Stop it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A nymd child (`nymd-bench --serve`).
#[derive(Debug)]
pub struct NymdProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Its pid.
    pub pid: u32,
}

/// One identity row of a `stats` answer.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its name in the child.
    pub id: String,
    /// Its state as the manager reports it (`failed: why` included).
    pub state: String,
    pub running: bool,
    pub websocket: String,
    pub address: String,
    pub apps: u64,
    pub stats: Option<Value>,
    /// Its SOCKS5 listener (`host:port`), if it has one.
    pub socks: Option<String>,
    /// Its SOCKS counters (open, total, failed, bytes...), if it has them.
    pub socks_stats: Option<Value>,
}

impl Row {
    /// A counter (0 when absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.stats
            .as_ref()
            .and_then(|s| s.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// Packets it has sent, cover and real.
    pub fn packets_sent(&self) -> u64 {
        self.counter("cover_packets_sent") + self.counter("real_packets_sent")
    }
}

impl NymdProc {
    /// Spawn a child against `api_url`.
    pub async fn spawn(
        api_url: &str,
        cover: bool,
        delays: bool,
        derivation: &str,
        outbox: bool,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("own path")?;
        let mut child = Command::new(exe)
            .arg("--serve")
            .arg(api_url)
            .arg("--cover")
            .arg(cover.to_string())
            .arg("--delays")
            .arg(delays.to_string())
            .arg("--derivation")
            .arg(derivation)
            .arg("--outbox")
            .arg(outbox.to_string())
            .env("RUST_LOG", child_log())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning nymd child")?;
        let pid = child.id().context("child pid")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        Ok(Self {
            child,
            stdin,
            stdout,
            pid,
        })
    }

    async fn command(&mut self, cmd: Value, timeout: Duration) -> anyhow::Result<Value> {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .context("writing to child")?;
        self.stdin.flush().await.context("writing to child")?;
        let answer = tokio::time::timeout(timeout, self.stdout.next_line())
            .await
            .context("child did not answer in time")?
            .context("reading child")?
            .context("child exited")?;
        serde_json::from_str(&answer).context("child answer")
    }

    /// Create and start `count` identities.
    pub async fn init(&mut self, count: usize, prefix: &str) -> anyhow::Result<f64> {
        self.init_with(count, prefix, Value::Null).await
    }

    /// Create and start `count` identities, each with a SOCKS5 port whose
    /// connections go to `provider`, anonymously (reply SURBs) or not.
    pub async fn init_socks(
        &mut self,
        count: usize,
        prefix: &str,
        provider: &str,
        anonymous: bool,
    ) -> anyhow::Result<f64> {
        let socks5 = json!({"provider": provider, "anonymous": anonymous});
        self.init_with(count, prefix, socks5).await
    }

    async fn init_with(
        &mut self,
        count: usize,
        prefix: &str,
        socks5: Value,
    ) -> anyhow::Result<f64> {
        let timeout = Duration::from_secs(60 + 5 * count as u64);
        let v = self
            .command(
                json!({"cmd": "init", "count": count, "prefix": prefix, "socks5": socks5}),
                timeout,
            )
            .await?;
        if v.get("ok") != Some(&Value::Bool(true)) {
            bail!("init failed: {}", v);
        }
        Ok(v.get("secs").and_then(Value::as_f64).unwrap_or(0.0))
    }

    /// Every identity's row.
    pub async fn stats(&mut self) -> anyhow::Result<Vec<Row>> {
        let v = self
            .command(json!({"cmd": "stats"}), Duration::from_secs(30))
            .await?;
        let rows = v
            .get("identities")
            .and_then(Value::as_array)
            .context("identities")?;
        Ok(rows
            .iter()
            .map(|r| Row {
                id: r.get("id").and_then(Value::as_str).unwrap_or("").into(),
                state: r.get("state").and_then(Value::as_str).unwrap_or("").into(),
                running: r.get("running").and_then(Value::as_bool).unwrap_or(false),
                websocket: r
                    .get("websocket")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                address: r
                    .get("address")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                apps: r.get("apps").and_then(Value::as_u64).unwrap_or(0),
                stats: r.get("stats").filter(|s| !s.is_null()).cloned(),
                socks: r.get("socks").and_then(Value::as_str).map(String::from),
                socks_stats: r.get("socks_stats").filter(|s| !s.is_null()).cloned(),
            })
            .collect())
    }

    /// Wait until every identity runs and reports counters (and, with
    /// `sending`, has sent something).
    pub async fn wait_running(&mut self, sending: bool) -> anyhow::Result<Vec<Row>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let rows = self.stats().await?;
            let ready =
                |r: &Row| r.running && r.stats.is_some() && (!sending || r.packets_sent() > 0);
            let waiting: Vec<&Row> = rows.iter().filter(|r| !ready(r)).collect();
            if waiting.is_empty() {
                return Ok(rows);
            }
            if tokio::time::Instant::now() > deadline {
                let shown: Vec<String> = waiting
                    .iter()
                    .take(8)
                    .map(|r| {
                        format!(
                            "{} ({}, counters {}, {} packets sent)",
                            r.id,
                            r.state,
                            if r.stats.is_some() { "yes" } else { "none" },
                            r.packets_sent()
                        )
                    })
                    .collect();
                bail!(
                    "{} of {} identities not running and sending after 120 s: {}",
                    waiting.len(),
                    rows.len(),
                    shown.join("; ")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ask the child to stop and wait for it.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}
