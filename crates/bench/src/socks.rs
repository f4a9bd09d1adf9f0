//! The `socks` scenario (issue 19): downloads through an identity's SOCKS5
//! port over the localnet, cover traffic and per-hop delays off.
//!
//! Processes: the localnet (its own process, as for `throughput`); a
//! network requester (`nymd-exit`, loopback-only policy) in a child of its
//! own (`nymd-bench --serve-exit API`), so its CPU is measured apart from
//! nymd's; one nymd child per mode whose single identity has a `[socks5]`
//! section naming the exit's address. The HTTP target (a few lines of
//! HTTP/1.1 on 127.0.0.1, `GET /N` answers N pattern bytes) and the SOCKS5
//! client (CONNECT, no authentication) run in this process.
//!
//! Per mode (anonymous: reply SURBs, nymd's default; plain: the identity's
//! address in Connect), in order:
//! - one warm-up request (the first connection may meet a SOCKS port that
//!   is not bound yet);
//! - `--socks-requests` sequential 1-byte requests, each on a new SOCKS
//!   connection: the medians of the CONNECT's answer (one round trip
//!   through the mixnet plus the exit's TCP connect), of the time from the
//!   request to the first response byte (one more round trip), and of the
//!   time from opening the SOCKS connection to that byte (curl's
//!   `time_starttransfer`);
//! - one download of `--socks-bytes` on one connection, with CPU marks of
//!   nymd, the exit and the localnet around it: goodput, packets/s, cores.
//!
//! Against the crypto floor: the crypto nymd cannot avoid for the download,
//! from its counters and the floor's costs (anonymous: one reply SURB per
//! packet it receives, each built like a 4-hop sphinx header, plus a data
//! packet per packet it sends; plain: one x25519 opening per packet it
//! receives, plus the data packets it sends), divided by the CPU nymd used:
//! 1.0 would mean nymd does nothing but that crypto. Expressed as packets:
//! received packets per nymd core-second vs per core-second of that floor.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nymd_exit::{ExitConfig, NetworkRequester};
use nymd_mixnet::{GatewaySelection, Shared, SharedConfig, TopologySource, Url};
use nymd_proto::keys::{SigningKey, X25519Public, X25519Secret};
use nymd_proto::replies::ReplySurb;
use nymd_proto::sphinx::sphinx_node;
use nymd_proto::{NodeAddress, SphinxVersion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::child::{LocalnetProc, NymdProc, Row};
use crate::floor::{round, Floor};
use crate::procfs::{thread_cpu_seconds, CpuMark};
use crate::Args;

/// Bound of one small request (connect, request, 1-byte answer).
const SMALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first request may keep failing while the port comes up.
const WARMUP_DEADLINE: Duration = Duration::from_secs(90);
/// Longer than nymd's refresh of the counters the stats rows show.
const STATS_SETTLE: Duration = Duration::from_millis(700);
/// Slowest download rate before the download counts as stuck.
const MIN_RATE: f64 = 20_000.0;
/// Largest response head the client reads, and request head the target.
const MAX_HEAD: usize = 8 * 1024;
/// Period of the body's byte pattern (prime, so chunk edges do not hide a
/// shifted byte).
const PATTERN: u64 = 251;
/// Reply SURBs an anonymous connection sends besides those the exit asks
/// for: 20 with its Connect and 3 with each of its two Sends (the seq-0
/// empty one and the request).
const SURBS_PER_CONNECTION: u64 = 20 + 2 * 3;

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1000.0)
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    round(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn counter(rows: &[Row], name: &str) -> u64 {
    rows.iter().map(|r| r.counter(name)).sum()
}

fn value_u64(v: &Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- exit child

/// Child mode `--serve-exit API`: a network requester (loopback-only exit
/// policy; its client with cover and delays off) on a gateway of the
/// localnet at `api`. Prints `{"ok":true,"address":...}` once it runs, then
/// answers `{"cmd":"stats"}` lines until `quit` or end of input.
pub async fn serve_exit(api: String) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    let shared = Shared::new(SharedConfig {
        default_source: TopologySource::NymApi(vec![Url::parse(&api).context("api url")?]),
        ..SharedConfig::default()
    })
    .context("shared mixnet state")?;
    let mut client = nymd_exit::network_requester_client_config();
    client.disable_main_poisson = true;
    client.disable_loop_cover = true;
    client.disable_delays = true;
    let launch = NetworkRequester::launch(
        &shared,
        None,
        GatewaySelection::UniformRandom,
        client,
        ExitConfig::default(),
    );
    let exit = tokio::time::timeout(Duration::from_secs(60), launch)
        .await
        .context("the network requester did not start in 60 s")?
        .context("starting the network requester")?;
    write_line(
        &mut out,
        &json!({"ok": true, "address": exit.address().to_string()}),
    )
    .await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading commands")? {
        let cmd: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let reply = match cmd.get("cmd").and_then(Value::as_str) {
            Some("stats") => {
                let e = exit.stats();
                let c = exit.client().stats();
                json!({
                    "ok": true,
                    "exit": {
                        "connections_total": e.connections_total,
                        "connections_failed": e.connections_failed,
                        "connections_refused": e.connections_refused,
                        "bytes_to_targets": e.bytes_to_targets,
                        "bytes_from_targets": e.bytes_from_targets,
                        "malformed_messages": e.malformed_messages,
                    },
                    "client": {
                        "real_packets_sent": c.real_packets_sent,
                        "real_packets_received": c.real_packets_received,
                        "retransmissions": c.retransmissions,
                        "acks_received": c.acks_received,
                    },
                })
            }
            Some("quit") | None => break,
            Some(other) => json!({"ok": false, "errors": [format!("unknown command {other}")]}),
        };
        write_line(&mut out, &reply).await?;
    }
    exit.shutdown().await;
    Ok(())
}

async fn write_line(out: &mut tokio::io::Stdout, v: &Value) -> anyhow::Result<()> {
    let mut text = v.to_string();
    text.push('\n');
    out.write_all(text.as_bytes()).await.context("stdout")?;
    out.flush().await.context("stdout")
}

/// The exit child, seen from the parent.
#[derive(Debug)]
struct ExitProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    pid: u32,
    address: String,
}

impl ExitProc {
    async fn spawn(api_url: &str, derivation: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("own path")?;
        let mut child = Command::new(exe)
            .arg("--serve-exit")
            .arg(api_url)
            .arg("--derivation")
            .arg(derivation)
            .env("RUST_LOG", crate::child::child_log())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the exit child")?;
        let pid = child.id().context("exit child pid")?;
        let stdin = child.stdin.take().context("exit child stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("exit child stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(90), stdout.next_line())
            .await
            .context("the exit child did not start in 90 s")?
            .context("reading the exit child")?
            .context("the exit child ended before it started (see its error above)")?;
        let v: Value = serde_json::from_str(&first).context("the exit child's first line")?;
        let address = v
            .get("address")
            .and_then(Value::as_str)
            .with_context(|| format!("the exit child did not give its address: {v}"))?
            .to_string();
        Ok(Self {
            child,
            stdin,
            stdout,
            pid,
            address,
        })
    }

    async fn stats(&mut self) -> anyhow::Result<Value> {
        self.stdin
            .write_all(b"{\"cmd\":\"stats\"}\n")
            .await
            .context("writing to the exit child")?;
        self.stdin
            .flush()
            .await
            .context("writing to the exit child")?;
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .context("the exit child did not answer in time")?
            .context("reading the exit child")?
            .context("the exit child ended")?;
        serde_json::from_str(&line).context("the exit child's answer")
    }

    async fn quit(mut self) {
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

// ---------------------------------------------------------------- HTTP target

/// The local HTTP server the downloads come from; stops when dropped.
struct Target {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the HTTP target")?;
        let addr = listener.local_addr().context("the HTTP target's address")?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(async move {
                            if let Err(e) = serve_http(s).await {
                                eprintln!("socks: HTTP target: {e:#}");
                            }
                        });
                    }
                    Err(e) => {
                        eprintln!("socks: HTTP target accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self { addr, task })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read until the end of an HTTP head; returns the head and what followed.
async fn read_head(s: &mut TcpStream) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(p + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            bail!("HTTP head longer than {MAX_HEAD} bytes");
        }
        let n = s.read(&mut chunk).await.context("reading an HTTP head")?;
        if n == 0 {
            bail!(
                "connection closed within the HTTP head ({} bytes)",
                buf.len()
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request: `GET /N` answers N bytes of the pattern, then closes.
async fn serve_http(mut s: TcpStream) -> anyhow::Result<()> {
    let _ = s.set_nodelay(true);
    let (head, _) = read_head(&mut s).await?;
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let size: u64 = line
        .strip_prefix("GET /")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("request line {line:?} is not `GET /<bytes> ...`"))?;
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(header.as_bytes())
        .await
        .context("writing the response head")?;
    // A whole number of pattern periods, so every chunk starts at phase 0.
    let chunk: Vec<u8> = (0..PATTERN * 256).map(|i| (i % PATTERN) as u8).collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n])
            .await
            .context("writing the response body")?;
        left -= n as u64;
    }
    s.shutdown().await.context("closing the response")
}

// ---------------------------------------------------------------- SOCKS client

fn reply_name(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown",
    }
}

/// SOCKS5 CONNECT (no authentication) to `target` through `proxy`; returns
/// the stream once the proxy answered success.
async fn socks_connect(proxy: &str, target: SocketAddr) -> anyhow::Result<TcpStream> {
    let SocketAddr::V4(v4) = target else {
        bail!("the target {target} is not IPv4");
    };
    let mut s = TcpStream::connect(proxy)
        .await
        .with_context(|| format!("connecting to the SOCKS port {proxy}"))?;
    let _ = s.set_nodelay(true);
    s.write_all(&[5, 1, 0]).await.context("SOCKS greeting")?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice)
        .await
        .context("the SOCKS port closed after the greeting")?;
    if choice != [5, 0] {
        bail!("the SOCKS port chose {choice:?}, not [5, 0] (no authentication)");
    }
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).await.context("SOCKS CONNECT")?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .await
        .context("the SOCKS port closed before answering CONNECT")?;
    if head[0] != 5 {
        bail!("SOCKS reply version {}, not 5", head[0]);
    }
    if head[1] != 0 {
        bail!(
            "SOCKS CONNECT to {target} failed: reply {} ({})",
            head[1],
            reply_name(head[1])
        );
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len)
                .await
                .context("SOCKS reply address")?;
            usize::from(len[0]) + 2
        }
        other => bail!("SOCKS reply address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    s.read_exact(&mut bound)
        .await
        .context("SOCKS reply address")?;
    Ok(s)
}

/// One fetch's timings.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    /// Opening the SOCKS connection until the CONNECT's success.
    connect: Duration,
    /// The request written until the first response byte.
    ttfb: Duration,
    /// Opening the SOCKS connection until the first response byte.
    first_byte: Duration,
    /// Opening the SOCKS connection until half the body was read.
    half: Duration,
    /// Opening the SOCKS connection until the last body byte.
    total: Duration,
}

/// Check `body` against the pattern from offset `at`.
fn check_body(body: &[u8], at: u64) -> anyhow::Result<()> {
    for (i, b) in body.iter().enumerate() {
        let off = at + i as u64;
        if u64::from(*b) != off % PATTERN {
            bail!("body byte {off} is {b}, expected {}", off % PATTERN);
        }
    }
    Ok(())
}

/// `GET /size` through the proxy; every body byte is checked. `received`
/// follows the body bytes read (what arrived before a failure).
async fn fetch(
    proxy: &str,
    target: SocketAddr,
    size: u64,
    received: &mut u64,
) -> anyhow::Result<Fetch> {
    let t0 = Instant::now();
    let mut s = socks_connect(proxy, target).await?;
    let connect = t0.elapsed();
    let req = format!("GET /{size} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .context("writing the request")?;
    let t1 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.context("reading the response")?;
    if n == 0 {
        bail!("the connection closed before the first response byte");
    }
    let ttfb = t1.elapsed();
    let first_byte = t0.elapsed();
    let mut head = buf[..n].to_vec();
    let body_at = loop {
        if let Some(p) = find(&head, b"\r\n\r\n") {
            break p + 4;
        }
        if head.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        let n = s
            .read(&mut buf)
            .await
            .context("reading the response head")?;
        if n == 0 {
            bail!("the connection closed within the response head");
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..body_at]).to_string();
    if !text.starts_with("HTTP/1.1 200") {
        bail!(
            "response {:?}",
            text.lines().next().unwrap_or_default().to_string()
        );
    }
    let length: u64 = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .context("response without Content-Length")?;
    if length != size {
        bail!("Content-Length {length}, asked for {size}");
    }
    let mut got = (head.len() - body_at) as u64;
    check_body(&head[body_at..], 0)?;
    *received = got;
    let mut half = None;
    while got < size {
        if half.is_none() && got >= size / 2 {
            half = Some(t0.elapsed());
        }
        let n = s.read(&mut buf).await.context("reading the body")?;
        if n == 0 {
            bail!("the connection closed after {got} of {size} body bytes");
        }
        check_body(&buf[..n], got)?;
        got += n as u64;
        *received = got;
    }
    if got != size {
        bail!("{got} body bytes, expected {size}");
    }
    Ok(Fetch {
        connect,
        ttfb,
        first_byte,
        half: half.unwrap_or_else(|| t0.elapsed()),
        total: t0.elapsed(),
    })
}

// ---------------------------------------------------------------- SURB floor

/// CPU µs to build one 4-hop reply SURB (version 259, the current sender
/// derivation) on one thread: the anonymous download's floor per packet.
fn surb_floor_us(secs: f64) -> anyhow::Result<f64> {
    let mut rng = StdRng::from_entropy();
    let nodes = (0..4u16)
        .map(|i| {
            let key = X25519Public::from(&X25519Secret::random_from_rng(&mut rng));
            let addr = NodeAddress(SocketAddr::from(([127, 0, 0, 1], 40_000 + i)));
            sphinx_node(&addr, &key)
        })
        .collect::<Result<Vec<_>, _>>()
        .context("floor route")?;
    let identity = SigningKey::generate(&mut rng).verifying_key();
    let mut build = || {
        ReplySurb::build_with_mean_delay(
            &mut rng,
            &nodes,
            &identity,
            Duration::ZERO,
            SphinxVersion::Seeds259,
        )
        .map(std::hint::black_box)
        .context("building a reply SURB")
    };
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < secs / 10.0 {
        build()?;
    }
    let cpu0 = thread_cpu_seconds().unwrap_or(0.0);
    let t0 = Instant::now();
    let mut ops = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        for _ in 0..8 {
            build()?;
        }
        ops += 8;
    }
    let cpu = thread_cpu_seconds().unwrap_or(0.0) - cpu0;
    let used = if cpu > 0.0 {
        cpu
    } else {
        t0.elapsed().as_secs_f64()
    };
    Ok(used * 1e6 / ops.max(1) as f64)
}

// ---------------------------------------------------------------- scenario

/// Run the scenario on `net` (which should have a fair share of the CPU:
/// it carries every packet).
pub async fn socks(
    args: &Args,
    net: &LocalnetProc,
    floor: Option<&Floor>,
) -> anyhow::Result<Value> {
    let secs = args.crypto_secs;
    let surb_us = tokio::task::spawn_blocking(move || surb_floor_us(secs))
        .await
        .context("SURB floor")??;
    let target = Target::start().await?;
    let mut exit = ExitProc::spawn(&net.api_url, &args.derivation).await?;
    eprintln!("socks: exit {} (pid {})", exit.address, exit.pid);
    let mut rows = Vec::new();
    let mut result = Ok(());
    for mode in &args.socks_modes {
        let anonymous = match mode.as_str() {
            "anonymous" => true,
            "plain" => false,
            other => {
                result = Err(anyhow::anyhow!(
                    "--socks-modes: unknown mode {other:?} (anonymous, plain)"
                ));
                break;
            }
        };
        eprintln!("socks ({mode})...");
        match run_mode(args, net, &mut exit, &target, anonymous, floor, surb_us).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                result = Err(e.context(format!("socks scenario, {mode} mode")));
                break;
            }
        }
    }
    exit.quit().await;
    result?;
    Ok(json!({
        "download_bytes": args.socks_bytes,
        "small_requests": args.socks_requests,
        "cover_traffic": "off",
        "delays": "off",
        "exit": "nymd-exit network requester in its own process, loopback-only policy, cover and delays off",
        "surb_build_us": round(surb_us),
        "rows": rows,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn run_mode(
    args: &Args,
    net: &LocalnetProc,
    exit: &mut ExitProc,
    target: &Target,
    anonymous: bool,
    floor: Option<&Floor>,
    surb_us: f64,
) -> anyhow::Result<Value> {
    let mut c = NymdProc::spawn(&net.api_url, false, false, &args.derivation, args.outbox).await?;
    let r = measure(args, net, exit, &mut c, target, anonymous, floor, surb_us).await;
    c.quit().await;
    r
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    net: &LocalnetProc,
    exit: &mut ExitProc,
    c: &mut NymdProc,
    target: &Target,
    anonymous: bool,
    floor: Option<&Floor>,
    surb_us: f64,
) -> anyhow::Result<Value> {
    c.init_socks(1, "socks", &exit.address, anonymous).await?;
    let rows = c.wait_running(false).await?;
    let proxy = rows
        .first()
        .and_then(|r| r.socks.clone())
        .context("the identity has no SOCKS port")?;

    // Warm-up: the first connection, retried while the port comes up.
    let deadline = Instant::now() + WARMUP_DEADLINE;
    loop {
        match tokio::time::timeout(SMALL_TIMEOUT, fetch(&proxy, target.addr, 1, &mut 0)).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) if Instant::now() > deadline => {
                return Err(e.context("the first request through the SOCKS port"))
            }
            Err(_) if Instant::now() > deadline => {
                bail!("the first request through the SOCKS port did not complete in time")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }

    let mut small = Vec::with_capacity(args.socks_requests);
    for i in 0..args.socks_requests {
        let f = tokio::time::timeout(SMALL_TIMEOUT, fetch(&proxy, target.addr, 1, &mut 0))
            .await
            .with_context(|| format!("small request {i} took over {SMALL_TIMEOUT:?}"))?
            .with_context(|| format!("small request {i}"))?;
        small.push(f);
    }

    let size = args.socks_bytes;
    let limit = Duration::from_secs_f64(60.0 + size as f64 / MIN_RATE);
    // nymd's counters reach the manager's rows every 500 ms: let them
    // settle while nothing moves, so the download's packet counts are
    // exact (the exit's are read live).
    tokio::time::sleep(STATS_SETTLE).await;
    let s0 = c.stats().await?;
    let e0 = exit.stats().await?;
    let m0 = CpuMark::now(&[c.pid, exit.pid, net.pid]);
    let mut got = 0u64;
    // A download that fails is a result too (say, nymd closing the
    // connection when the requester's data waits out of order beyond its
    // bound): the row says why and how far it got.
    let (big, error) =
        match tokio::time::timeout(limit, fetch(&proxy, target.addr, size, &mut got)).await {
            Ok(Ok(f)) => (Some(f), None),
            Ok(Err(e)) => (None, Some(format!("{e:#}"))),
            Err(_) => (None, Some(format!("not complete after {limit:?}"))),
        };
    if let Some(e) = &error {
        eprintln!("socks: the download failed after {got} of {size} bytes: {e}");
    }
    let m1 = CpuMark::now(&[c.pid, exit.pid, net.pid]);
    let e1 = exit.stats().await?;
    tokio::time::sleep(STATS_SETTLE).await;
    let s1 = c.stats().await?;

    let (cores, elapsed) = m1.cores_since(&m0);
    let core = |i: usize| cores.get(i).copied().unwrap_or(0.0);
    let d = |name: &str| counter(&s1, name).saturating_sub(counter(&s0, name));
    let de = |path: &[&str]| value_u64(&e1, path).saturating_sub(value_u64(&e0, path));
    let received = d("real_packets_received");
    let sent = d("real_packets_sent");
    let surbs = if anonymous {
        d("surbs_handed_out") + SURBS_PER_CONNECTION
    } else {
        0
    };
    let (data_us, receive_us) = match floor {
        Some(f) if args.derivation == "stock" => (f.data_stock.cpu_us, f.receive.cpu_us),
        Some(f) => (f.data_fast.cpu_us, f.receive.cpu_us),
        None => (0.0, 0.0),
    };
    // The crypto nymd cannot avoid for this download, µs.
    let floor_us = sent as f64 * data_us
        + if anonymous {
            surbs as f64 * surb_us
        } else {
            received as f64 * receive_us
        };
    let nymd_cpu_us = core(0) * elapsed * 1e6;
    let per_core = if nymd_cpu_us > 0.0 {
        received as f64 / (nymd_cpu_us / 1e6)
    } else {
        0.0
    };
    let floor_per_core = if floor_us > 0.0 {
        received as f64 / (floor_us / 1e6)
    } else {
        0.0
    };
    let ratio = if nymd_cpu_us > 0.0 && floor_us > 0.0 {
        floor_us / nymd_cpu_us
    } else {
        0.0
    };
    let socks_stats = s1.first().and_then(|r| r.socks_stats.clone());
    let tail = big
        .map(|b| b.total.saturating_sub(b.half).as_secs_f64())
        .unwrap_or(0.0);
    let second_half = if tail > 0.0 {
        (size - size / 2) as f64 / tail / 1e6
    } else {
        0.0
    };
    Ok(json!({
        "mode": if anonymous { "anonymous" } else { "plain" },
        "requests": small.len(),
        "connect_ms": median(small.iter().map(|f| ms(f.connect)).collect()),
        "ttfb_ms": median(small.iter().map(|f| ms(f.ttfb)).collect()),
        "first_byte_ms": median(small.iter().map(|f| ms(f.first_byte)).collect()),
        "small_total_ms": median(small.iter().map(|f| ms(f.total)).collect()),
        "download_bytes": size,
        "download_received_bytes": got,
        "download_error": error,
        "download_s": round(elapsed),
        "download_ttfb_ms": big.map(|b| ms(b.ttfb)),
        // Over what arrived (all of it unless `download_error`).
        "goodput_mb_per_s": r3(got as f64 / elapsed / 1e6),
        // The second half alone: past the start (and, in anonymous mode,
        // usually past the SURB answers' initial burst).
        "goodput_second_half_mb_per_s": r3(second_half),
        "packets_per_s": round(received as f64 / elapsed),
        "nymd_packets_received": received,
        "nymd_packets_sent": sent,
        "nymd_retransmissions": d("retransmissions"),
        "nymd_duplicate_fragments": d("duplicate_fragments"),
        "surbs_built": surbs,
        "surb_requests_answered": d("surb_requests_answered"),
        "surb_requests_refused": d("surb_requests_refused"),
        "exit_packets_sent": de(&["client", "real_packets_sent"]),
        "exit_retransmissions": de(&["client", "retransmissions"]),
        "exit_bytes_from_targets": de(&["exit", "bytes_from_targets"]),
        "nymd_cores": r3(core(0)),
        "exit_cores": r3(core(1)),
        "localnet_cores": r3(core(2)),
        "nymd_us_per_packet": round(if received > 0 { nymd_cpu_us / received as f64 } else { 0.0 }),
        "floor_us_per_packet": round(if received > 0 { floor_us / received as f64 } else { 0.0 }),
        "packets_per_nymd_core_s": round(per_core),
        "floor_packets_per_core_s": round(floor_per_core),
        "ratio_vs_floor": r3(ratio),
        "socks_stats": socks_stats,
    }))
}
