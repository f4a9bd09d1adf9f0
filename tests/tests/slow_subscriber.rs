//! A control-plane subscriber that stops reading (`nymctl events --follow`
//! writing into a pipe nobody reads) does not block nymd: while thousands of
//! events are produced, `nymctl` requests are answered, apps are served and
//! nymd's memory stays bounded.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::{bin, nymctl, nymctl_json, Daemon};
use nymd_tests::App;

const READY: Duration = Duration::from_secs(60);
/// App connections opened and closed: two events each.
const CONNECTIONS: u32 = 1500;

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
    let rss_start = rss_kib(pid, "VmRSS:");

    // Many events: each app connection is announced and its end too.
    for i in 0..CONNECTIONS {
        let app = App::connect(addr).await;
        app.close().await;
        if i % 500 == 499 {
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
    eprintln!(
        "slow subscriber: {CONNECTIONS} app connections; nymd RSS {rss_start} KiB -> {rss_end} KiB, peak {peak} KiB; subscriber still running: {}",
        matches!(stuck.try_wait(), Ok(None))
    );
    let _ = stuck.kill();
    let _ = stuck.wait();

    let status = tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.terminate(Duration::from_secs(30))
    })
    .await
    .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    net.shutdown().await;
}
