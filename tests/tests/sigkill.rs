//! A real `nymd` process killed with SIGKILL at random points (right after
//! it starts, while `nymctl init` runs, while an app sends), up to 50 times
//! within a time budget, with a deterministic schedule:
//!
//! - it always starts again, with every identity whose `init` succeeded, at
//!   the same address; an interrupted `init` leaves either a whole identity
//!   or nothing (never a damaged folder);
//! - a message sent to one of its identities while it was down (the gateway
//!   stores it) is delivered to the app after the restart;
//! - messages an app had handed to nymd before the kill arrive at most once
//!   (the persisted outbox sends the unacknowledged ones again after the
//!   restart; those nymd had not journalled yet may be lost: see the
//!   README, "What happens to messages when nymd stops", and
//!   `tests/outbox.rs` for the test that every journalled one arrives).
//!
//! The mixnet runs in this test process, so only nymd dies; its gateway keeps
//! messages for offline clients in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use nymd_tests::procs::{bin, nymctl, nymctl_json, Daemon, NymdHarness};
use nymd_tests::{free_port, App, TestDaemon};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x5349_474b;
const MAX_KILLS: u32 = 50;
/// Kills stop when this much time has passed (and at least `MIN_KILLS` were
/// done); the loop takes about 2 s per kill on an idle machine.
const BUDGET: Duration = Duration::from_secs(150);
const MIN_KILLS: u32 = 10;
/// Identities made by interrupted inits are capped so restarts stay cheap.
const MAX_IDENTITIES: usize = 8;

/// nymd's log must show neither a panic nor a damaged identity.
fn check_log(h: &NymdHarness, run: u32) {
    let log = std::fs::read_to_string(h.log(run)).unwrap_or_default();
    assert!(!log.contains("panicked"), "nymd run {run} panicked:\n{log}");
    assert!(
        !log.contains("cannot be loaded"),
        "nymd run {run} found a damaged identity:\n{log}"
    );
}

fn kill(d: &mut Daemon) {
    let _ = d.child.kill();
    let _ = d.child.wait();
}

/// id → (address, websocket port) as `nymctl list` reports them.
async fn list(socket: &Path) -> BTreeMap<String, (String, u16)> {
    let socket = socket.to_path_buf();
    let v = tokio::task::spawn_blocking(move || nymctl_json(&socket, &["list"]))
        .await
        .expect("join");
    v["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().expect("id").to_string(),
                (
                    i["address"].as_str().expect("address").to_string(),
                    i["websocket_port"].as_u64().expect("port") as u16,
                ),
            )
        })
        .collect()
}

async fn init(socket: &Path, id: &str) -> (String, u16) {
    let socket = socket.to_path_buf();
    let id = id.to_string();
    let v = tokio::task::spawn_blocking(move || nymctl_json(&socket, &["init", "--id", &id]))
        .await
        .expect("join");
    (
        v["identity"]["address"]
            .as_str()
            .expect("address")
            .to_string(),
        v["identity"]["websocket_port"].as_u64().expect("port") as u16,
    )
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn send(app: &mut App, to: Recipient, data: Vec<u8>) {
    app.request_binary(&ClientRequest::Send {
        recipient: to,
        message: data,
        connection_id: None,
    })
    .await;
}

/// Read messages until `want` arrives; returns the others seen meanwhile.
async fn receive_until(app: &mut App, want: &[u8]) -> Vec<Vec<u8>> {
    let mut others = Vec::new();
    loop {
        match app.next_response().await {
            ServerResponse::Received { message, .. } if message == want => return others,
            ServerResponse::Received { message, .. } => others.push(message),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nymd_survives_sigkill_at_random_points() {
    // The in-process mixnet's log (captured; shown when the test fails):
    // `NYMD_TEST_LOG=nymd_localnet=debug`.
    if let Ok(filter) = std::env::var("NYMD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();

    // An identity outside the killed nymd: it sends to nymd's identities
    // while nymd is down and receives what they send.
    let outside_state = dir.join("outside");
    std::fs::create_dir(&outside_state).expect("dir");
    let outside = TestDaemon::start(&outside_state, &net.api_url(), free_port());
    let (outside_ws, outside_addr) = outside.init("outside").await;
    let mut outside_app = App::connect(outside_ws).await;
    outside_app
        .request_binary(&ClientRequest::SelfAddress)
        .await;
    let _ = outside_app.next_response().await;

    let mut h = NymdHarness::new(dir, &net.api_url(), "");
    let socket = h.socket.clone();

    let mut d = h.start().await;
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    for id in ["rx", "tx"] {
        let (addr, _) = init(&socket, id).await;
        known.insert(id.into(), addr);
    }
    let rx_addr: Recipient = known["rx"].parse().expect("address");

    let mut rng = StdRng::seed_from_u64(SEED);
    let started = Instant::now();
    let mut kills = 0u32;
    let mut points = [0u32; 3];
    let mut traffic_sent = 0u32;
    let mut traffic_seen: BTreeMap<u32, u32> = BTreeMap::new();
    let mut interrupted_inits = 0u32;
    while kills < MAX_KILLS && (kills < MIN_KILLS || started.elapsed() < BUDGET) {
        let mut point = rng.gen_range(0..3usize);
        if point == 1 && known.len() >= MAX_IDENTITIES {
            point = 2;
        }
        points[point] += 1;
        let mut maybe: Option<String> = None;
        match point {
            // Right after start: kill the running daemon, start it again and
            // kill it within its first half second.
            0 => {
                kill(&mut d);
                kills += 1;
                d = h.spawn();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..500))).await;
                kill(&mut d);
                check_log(&h, h.runs);
            }
            // During `nymctl init`.
            1 => {
                let id = format!("i{kills}");
                let child = Command::new(bin("nymctl"))
                    .arg("--socket")
                    .arg(&socket)
                    .args(["init", "--id", &id, "--json"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn nymctl");
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..150))).await;
                kill(&mut d);
                let out = tokio::task::spawn_blocking(move || child.wait_with_output())
                    .await
                    .expect("join")
                    .expect("nymctl output");
                if out.status.success() {
                    let v: serde_json::Value =
                        serde_json::from_slice(&out.stdout).expect("init --json");
                    let addr = v["identity"]["address"].as_str().expect("address");
                    known.insert(id, addr.to_string());
                } else {
                    interrupted_inits += 1;
                    maybe = Some(id);
                }
            }
            // While an app sends through nymd.
            _ => {
                let port = list(&socket).await["tx"].1;
                let mut app = App::connect(local(port)).await;
                let n = rng.gen_range(5..40u32);
                let first = traffic_sent;
                for i in first..first + n {
                    send(&mut app, outside_addr, i.to_be_bytes().to_vec()).await;
                }
                traffic_sent += n;
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
                kill(&mut d);
            }
        }
        kills += 1;
        check_log(&h, h.runs);

        // While nymd is down, a message for rx: its gateway stores it (the
        // sender's client gets the gateway's ack).
        let note = format!("while down {kills}").into_bytes();
        send(&mut outside_app, rx_addr, note.clone()).await;

        d = h.start().await;
        let now = list(&socket).await;
        for (id, addr) in &known {
            let got = now.get(id).map(|(a, _)| a);
            assert_eq!(got, Some(addr), "identity {id} after kill {kills}");
        }
        if let Some(id) = maybe {
            if let Some((addr, _)) = now.get(&id) {
                known.insert(id, addr.clone());
            }
        }
        let extra: BTreeSet<&String> = now.keys().filter(|k| !known.contains_key(*k)).collect();
        assert!(extra.is_empty(), "unexpected identities {extra:?}");
        let ids_on_disk = std::fs::read_dir(dir.join("state/identities"))
            .expect("identities dir")
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(
            ids_on_disk,
            known.len(),
            "identity folders after kill {kills}"
        );

        // The stored message reaches rx's app after the restart.
        let mut app = App::connect(local(now["rx"].1)).await;
        app.request_binary(&ClientRequest::SelfAddress).await;
        let others = match tokio::time::timeout(
            Duration::from_secs(50),
            receive_until(&mut app, &note),
        )
        .await
        {
            Ok(o) => o,
            Err(_) => {
                let log = std::fs::read_to_string(h.log(h.runs)).unwrap_or_default();
                let gateways: Vec<_> = net
                    .gateways()
                    .iter()
                    .map(|g| (g.id, net.counters(g.id)))
                    .collect();
                panic!(
                    "the message sent while nymd was down (kill {kills}, point {point}) did not arrive; gateways: {gateways:?}\nnymd log:\n{log}"
                );
            }
        };
        assert!(others.is_empty(), "rx got unexpected messages: {others:?}");
        app.close().await;

        // What tx's app handed over before the kill arrives at most once.
        while let Ok(r) =
            tokio::time::timeout(Duration::from_millis(200), outside_app.next_response()).await
        {
            if let ServerResponse::Received { message, .. } = r {
                let b: [u8; 4] = message.as_slice().try_into().expect("an index");
                *traffic_seen.entry(u32::from_be_bytes(b)).or_default() += 1;
            }
        }
    }

    // Everything received so far, then a clean stop.
    while let Ok(r) =
        tokio::time::timeout(Duration::from_secs(3), outside_app.next_response()).await
    {
        if let ServerResponse::Received { message, .. } = r {
            let b: [u8; 4] = message.as_slice().try_into().expect("an index");
            *traffic_seen.entry(u32::from_be_bytes(b)).or_default() += 1;
        }
    }
    let twice: Vec<_> = traffic_seen.iter().filter(|(_, c)| **c > 1).collect();
    eprintln!(
        "sigkill: {kills} kills in {:?} (after start {}, during init {}, during traffic {}); \
         {interrupted_inits} inits interrupted; {} identities; traffic: {} of {traffic_sent} \
         messages handed to nymd arrived",
        started.elapsed(),
        points[0],
        points[1],
        points[2],
        known.len(),
        traffic_seen.len(),
    );
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(nymctl(&socket, &["daemon", "shutdown"]).status.success());
    let status = tokio::task::spawn_blocking(move || d.wait_exit(Duration::from_secs(30)))
        .await
        .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    check_log(&h, h.runs);
    outside_app.close().await;
    outside.stop().await;
    net.shutdown().await;
}
