//! A control-plane subscriber that stops reading (`nymctl events --follow`
//! writing into a pipe nobody reads) does not block nymd: while tens of
//! thousands of events are produced, `nymctl` requests are answered, apps
//! are served, nymd drops the events the subscriber cannot take (and tells
//! it so) and nymd's memory stays bounded.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::{bin, nymctl, nymctl_json, Daemon};
use nymd_tests::App;

const READY: Duration = Duration::from_secs(60);
/// App connections opened and closed: two events each (about 15 s on an
/// idle 2-core machine).
const CONNECTIONS: u32 = 20_000;
/// Bound on nymd's peak memory growth while the subscriber is stuck.
///
/// Kept for the subscriber, the 40,000 events would take at least 8 MiB:
/// as the messages nymd sends (368 bytes each, plus two small strings) about
/// 17 MiB; as bare `Event`s (128 bytes plus the strings) about 8 MiB.
/// Measured growth without that: 0.5 to 0.9 MiB (also with 1,500 or
/// 10,000 connections: it does not grow with the events).
const RSS_GROWTH_KIB: u64 = 3 * 1024;

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_does_not_block_nymd() {
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let cfg = nymd_tests::procs::write_fast_config(dir, "");
    let socket = dir.join("nymd.sock");
    let state = dir.join("state");
    let api = net.api_url();
    let d = Daemon::spawn(
        &socket,
        &[
            "--config",
            cfg.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
            "--nym-api",
            &api,
        ],
        &dir.join("nymd.log"),
    );
    let d = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(READY);
        d
    })
    .await
    .expect("ready");
    let pid = d.child.id();
    let a = nymctl_json(&socket, &["init", "--id", "a"]);
    let port = a["identity"]["websocket_port"].as_u64().expect("port") as u16;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // The stuck subscriber: its stdout is a pipe this test never reads.
    let mut stuck = Command::new(bin("nymctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["events", "--follow", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nymctl events");
    // Its output is read on a thread: the first line (the snapshot: the
    // subscription is in place) at once, the rest only when told to, at the
    // end. Until then the pipe fills, nymctl blocks writing to it and stops
    // reading the control socket.
    let stdout = stuck.stdout.take().expect("stuck stdout");
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(stdout);
        let mut first = true;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if line_tx.send(line).is_err() {
                        return;
                    }
                }
            }
            if std::mem::take(&mut first) && drain_rx.recv().is_err() {
                return;
            }
        }
    });
    let first = tokio::time::timeout(READY, lines.recv())
        .await
        .expect("the subscriber's snapshot in time")
        .expect("the subscriber's first line");
    let first: serde_json::Value = serde_json::from_str(&first).expect("json");
    assert_eq!(first["type"].as_str(), Some("snapshot"), "{first}");
    // nymd's peak (VmHWM) from now on: its start-up does not count
    // (Linux: `5` to `clear_refs`; best effort, the peak seen is only
    // larger without it).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let rss_start = rss_kib(pid, "VmRSS:");
    let t0 = Instant::now();

    // Many events: each app connection is announced and its end too.
    for i in 0..CONNECTIONS {
        let app = App::connect(addr).await;
        app.close().await;
        if i % 2000 == 1999 {
            // The daemon answers its control socket all along.
            let out = nymctl(&socket, &["list"]);
            assert!(out.status.success(), "list after {i} connections");
        }
    }
    // Apps are served.
    let mut app = App::connect(addr).await;
    let me = app.self_address().await;
    app.request_binary(&ClientRequest::Send {
        recipient: me,
        message: b"still here".to_vec(),
        connection_id: None,
    })
    .await;
    loop {
        if let ServerResponse::Received { message, .. } = app.next_response().await {
            assert_eq!(message, b"still here");
            break;
        }
    }
    app.close().await;
    let st = nymctl_json(&socket, &["status", "a"]);
    assert_eq!(st["identity"]["state"].as_str(), Some("Running"), "{st}");
    let rss_end = rss_kib(pid, "VmRSS:");
    let peak = rss_kib(pid, "VmHWM:");
    let elapsed = t0.elapsed();
    // The subscriber is still there, stuck (it neither failed nor exited).
    let running = matches!(stuck.try_wait(), Ok(None));

    // Now read what it wrote. nymd could not deliver every event to it:
    // after the events that fit in the pipe, the socket buffers, the
    // connection's outgoing queue (256 messages) and the event channel
    // (1,024), the subscription fell behind and nymd dropped events for it
    // and said so (`Lagged`) instead of keeping them. With nymd buffering
    // for it without bound there is no `lagged` line.
    let _ = drain_tx.send(());
    let mut delivered = 0u64;
    let mut missed = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while missed.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(line)) = tokio::time::timeout(left, lines.recv()).await else {
            break;
        };
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        match v["type"].as_str() {
            Some("event") => delivered += 1,
            Some("lagged") => missed = v["missed"].as_u64(),
            _ => {}
        }
    }
    eprintln!(
        "slow subscriber: {CONNECTIONS} app connections ({} events) in {elapsed:?}; nymd RSS \
         {rss_start} KiB -> {rss_end} KiB, peak {peak} KiB; subscriber still running: \
         {running}; events it got before nymd dropped some: {delivered}, dropped: {missed:?}",
        2 * CONNECTIONS
    );
    let _ = stuck.kill();
    let _ = stuck.wait();
    assert!(running, "the stuck subscriber ended early");
    assert!(
        missed.is_some_and(|m| m > 0),
        "nymd never dropped events for the stuck subscriber ({delivered} delivered)"
    );
    assert!(rss_start > 0 && peak > 0, "nymd's memory not readable");
    let growth = peak.saturating_sub(rss_start);
    assert!(
        growth < RSS_GROWTH_KIB,
        "nymd grew by {growth} KiB while its subscriber was stuck (bound {RSS_GROWTH_KIB} KiB)"
    );

    let status = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.terminate(Duration::from_secs(30))
    })
    .await
    .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    net.shutdown().await;
}
