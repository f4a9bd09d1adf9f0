//! `nymd --localnet` keeps its network across restarts: the identity made
//! on the first start has the same address after nymd is stopped (SIGTERM)
//! and started again on the same state dir, reaches `running`, and an app on
//! its port gets a message it sends to itself. A third start with the
//! gateway's saved port taken moves the gateway to a new port, and the
//! identity follows it (its stored listener is updated from the topology).
//! The local network requester keeps its address across restarts, and a
//! damaged key file of it is an error, not new keys.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::procs::{nymctl_json, Daemon};
use nymd_tests::{free_port, App};

const READY: Duration = Duration::from_secs(60);

fn config(first_port: u16) -> String {
    format!(
        "[identities]\nfirst_port = {first_port}\n\n[identities.traffic]\ndisable_cover_traffic = true\ndisable_delays = true\n"
    )
}

/// Start nymd on the localnet and wait for its control socket.
async fn start(dir: &Path, run: u32) -> Daemon {
    let socket = dir.join("nymd.sock");
    let cfg = dir.join("nymd.toml");
    let state = dir.join("state");
    let d = Daemon::spawn(
        &socket,
        &[
            "--localnet",
            "--config",
            cfg.to_str().expect("utf8"),
            "--state-dir",
            state.to_str().expect("utf8"),
        ],
        &dir.join(format!("nymd-{run}.log")),
    );
    tokio::task::spawn_blocking(move || {
        let mut d = d;
        d.wait_ready(READY);
        d
    })
    .await
    .expect("ready")
}

/// Wait until `default` is running; returns its status.
async fn wait_running(socket: &Path) -> serde_json::Value {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        loop {
            let st = nymctl_json(&socket, &["status", "default"]);
            if st["identity"]["state"].as_str() == Some("Running") {
                return st;
            }
            assert!(start.elapsed() < READY, "default not running: {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .expect("join")
}

/// An app on the identity's port sends a message to itself.
async fn round_trip(port: u16, text: &[u8]) {
    let mut app = App::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let me = app.self_address().await;
    app.request_binary(&ClientRequest::Send {
        recipient: me,
        message: text.to_vec(),
        connection_id: None,
    })
    .await;
    match app.next_response().await {
        ServerResponse::Received { message, .. } => assert_eq!(message, text),
        other => panic!("unexpected {other:?}"),
    }
    app.close().await;
}

/// `ws://IP:PORT` as a socket address.
fn ws_addr(url: &str) -> SocketAddr {
    url.strip_prefix("ws://")
        .and_then(|a| a.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("not a ws://IP:PORT url: {url}"))
}

async fn stop(mut d: Daemon, dir: &Path, run: u32) {
    let status = tokio::task::spawn_blocking(move || d.terminate(Duration::from_secs(30)))
        .await
        .expect("join");
    let log = std::fs::read_to_string(dir.join(format!("nymd-{run}.log"))).unwrap_or_default();
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localnet_identity_survives_restarts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    std::fs::write(dir.join("nymd.toml"), config(free_port())).expect("config");
    let socket = dir.join("nymd.sock");

    // First start: the store is empty, so `default` is made on the localnet.
    let d = start(dir, 1).await;
    let st = wait_running(&socket).await;
    let address = nymctl_json(&socket, &["address", "default"])["address"]
        .as_str()
        .expect("address")
        .to_string();
    let port = st["identity"]["websocket_port"].as_u64().expect("port") as u16;
    let gateway_url = st["identity"]["gateway_url"]
        .as_str()
        .expect("gateway url")
        .to_string();
    round_trip(port, b"before the restart").await;
    stop(d, dir, 1).await;
    assert!(dir.join("state/localnet/localnet.json").exists());

    // Second start: same network, same identity, same gateway URL (unless
    // another process took the port meanwhile: then it is in use now).
    let d = start(dir, 2).await;
    let st = wait_running(&socket).await;
    let again = nymctl_json(&socket, &["address", "default"]);
    assert_eq!(again["address"].as_str(), Some(address.as_str()));
    let url2 = st["identity"]["gateway_url"]
        .as_str()
        .expect("gateway url")
        .to_string();
    assert!(
        url2 == gateway_url || std::net::TcpListener::bind(ws_addr(&gateway_url)).is_err(),
        "the gateway moved from {gateway_url} to {url2} though its port is free"
    );
    round_trip(port, b"after the restart").await;
    stop(d, dir, 2).await;

    // Third start with the gateway's port taken: the gateway moves and the
    // identity follows it.
    let squatter = std::net::TcpListener::bind(ws_addr(&url2)).expect("take the gateway's port");
    let d = start(dir, 3).await;
    let st = wait_running(&socket).await;
    let moved = st["identity"]["gateway_url"].as_str().expect("gateway url");
    assert_ne!(moved, url2, "the gateway is on a new port");
    let again = nymctl_json(&socket, &["address", "default"]);
    assert_eq!(again["address"].as_str(), Some(address.as_str()));
    round_trip(port, b"after the gateway moved").await;
    let stored = std::fs::read_to_string(dir.join("state/identities/default/gateway.toml"))
        .expect("gateway.toml");
    assert!(stored.contains(moved), "saved listener: {stored}");
    stop(d, dir, 3).await;
    drop(squatter);
}

/// The address of the local network requester that run `run` logged.
async fn exit_address(dir: &Path, run: u32) -> String {
    let log = dir.join(format!("nymd-{run}.log"));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("local network requester (SOCKS5 exit) running"))
        {
            let address = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("address="))
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            return address.to_string();
        }
        assert!(
            start.elapsed() < READY,
            "no network requester started:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The local network requester keeps its keys in the localnet's state
/// folder, so its address is the same after a restart (identities that
/// name it as their provider keep working). A damaged key file is not
/// replaced by new keys: nymd runs without the requester and says which
/// file is wrong and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localnet_exit_keeps_its_address_across_restarts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    std::fs::write(dir.join("nymd.toml"), config(free_port())).expect("config");
    let keys = dir.join("state/localnet/network-requester-keys.json");

    let d = start(dir, 1).await;
    let first = exit_address(dir, 1).await;
    eprintln!("local network requester: {first}");
    stop(d, dir, 1).await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&keys).expect("key file").permissions(),
    ) & 0o777;
    assert_eq!(mode, 0o600, "key file mode");

    let d = start(dir, 2).await;
    assert_eq!(
        exit_address(dir, 2).await,
        first,
        "same address after a restart"
    );
    stop(d, dir, 2).await;

    let damaged = "{\"version\": 1, \"identity\": \"garbage\"";
    std::fs::write(&keys, damaged).expect("damage the key file");
    let d = start(dir, 3).await;
    let log = dir.join("nymd-3.log");
    let start_wait = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("no local network requester") {
            break text;
        }
        assert!(
            start_wait.elapsed() < READY,
            "no error about the key file:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = text
        .lines()
        .find(|l| l.contains("no local network requester"))
        .expect("the line");
    assert!(
        line.contains(&keys.display().to_string())
            && line.contains("not a valid key file")
            && line.contains("delete"),
        "{line}"
    );
    assert!(!text.contains("(SOCKS5 exit) running"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&keys).expect("key file"),
        damaged,
        "not replaced by new keys"
    );
    // The daemon itself serves on.
    wait_running(&dir.join("nymd.sock")).await;
    stop(d, dir, 3).await;
}
