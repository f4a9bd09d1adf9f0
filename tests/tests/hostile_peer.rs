//! Remote peers cannot drain, flood or stall an identity (issue 13), end to
//! end through a real `nymd` process, its app port and `nymctl`:
//!
//! - `max_retransmissions = 1` in `[identities.traffic]` reaches the new
//!   identity's `config.toml`; a message to a recipient whose gateway drops
//!   everything (it stays listed, nothing is acknowledged) ends with an
//!   `error` to the app that sent it, the outbox keeps nothing, and `nymctl
//!   status` shows the memory in use against the daemon's budget;
//! - a flood of large messages to an identity with no app connected stops
//!   at the daemon's budget (`[daemon] memory_budget_mib = 6`): what nymd
//!   holds stays within it while the sender's gateway-bound rest waits at
//!   the recipient's gateway, and the app that connects afterwards gets
//!   every message exactly once.
//!
//! The client-level floods (forged SURB requests, SURB, reassembly and
//! reply-key floods, malformed messages) are in
//! `crates/mixnet/tests/hostile_peer*.rs`. Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nymd_localnet::{DelayPolicy, Localnet, LocalnetConfig};
use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_proto::Recipient;
use nymd_tests::procs::{nymctl, NymdHarness};
use nymd_tests::{assert_exactly_once, collect_received, free_port, App, TestDaemon, WAIT};

async fn two_gateways() -> Localnet {
    Localnet::start(LocalnetConfig {
        gateways: 2,
        delay: DelayPolicy::NoDelay,
        ..LocalnetConfig::default()
    })
    .await
    .expect("localnet")
}

/// `nymctl init --id ID --gateway G`: the identity's app port and address.
async fn init(h: &NymdHarness, id: &str, gateway: &str) -> (SocketAddr, Recipient) {
    let v = h.ctl(&["init", "--id", id, "--gateway", gateway]).await;
    let st = h.ctl(&["status", id]).await;
    let port = st["identity"]["websocket_port"].as_u64().expect("port");
    let address = st["identity"]["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("an address");
    assert!(v.is_object(), "{v}");
    (
        SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("port"))),
        address,
    )
}

/// `VmHWM` of process `pid`, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_gateway_that_never_acknowledges_gives_the_sending_app_an_error() {
    let net = two_gateways().await;
    let gw = net.gateways();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut h = NymdHarness::new(tmp.path(), &net.api_url(), "max_retransmissions = 1\n");
    let mut d = h.start().await;
    let (alice_ws, _) = init(&h, "alice", &gw[0].identity_bs58()).await;
    let (_, bob) = init(&h, "bob", &gw[1].identity_bs58()).await;
    let config = std::fs::read_to_string(tmp.path().join("state/identities/alice/config.toml"))
        .expect("config.toml");
    assert!(config.contains("max_retransmissions = 1"), "{config}");

    // Bob's gateway stays listed but drops everything that reaches it.
    net.set_drop_incoming(gw[1].id, true).expect("fault switch");
    let mut app = App::connect(alice_ws).await;
    let mut other = App::connect(alice_ws).await;
    app.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        app.next_response().await,
        ServerResponse::SelfAddress(_)
    ));
    app.request_binary(&ClientRequest::Send {
        recipient: bob,
        message: b"never acknowledged".to_vec(),
        connection_id: Some(5),
    })
    .await;
    let start = Instant::now();
    let error = loop {
        let left = WAIT.saturating_sub(start.elapsed());
        match app.try_next_response(left).await {
            Some(ServerResponse::Error(e)) => break e,
            Some(_) => continue,
            None => panic!("no error reached the app in {WAIT:?}"),
        }
    };
    assert!(
        error.message.contains("retransmissions"),
        "{}",
        error.message
    );
    // The other app of the identity is not told.
    other.request_binary(&ClientRequest::SelfAddress).await;
    assert!(matches!(
        other.next_response().await,
        ServerResponse::SelfAddress(_)
    ));
    assert!(other
        .try_next_response(Duration::from_millis(500))
        .await
        .is_none());

    // Nothing is left to send: the outbox is empty, and status shows the
    // memory in use against the default budget (1 GiB).
    let start = Instant::now();
    let st = loop {
        let st = h.ctl(&["status", "alice"]).await;
        let c = &st["identity"]["counters"];
        if c["outbox_messages"].as_u64() == Some(0) && c["retransmissions"].as_u64() == Some(1) {
            break st;
        }
        assert!(start.elapsed() < WAIT, "outbox never emptied: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let m = &st["identity"]["memory"];
    assert_eq!(m["daemon_budget"].as_u64(), Some(1 << 30), "{st}");
    assert!(m["daemon_bytes"].as_u64() <= Some(1 << 30), "{st}");
    assert_eq!(m["inbox_bound"].as_u64(), Some(128 << 20), "{st}");
    let text = nymctl(&h.socket, &["status", "alice"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("memory ") && text.contains("of its 1.0 GiB budget"),
        "{text}"
    );
    assert!(text.contains("warnings "), "{text}");
    app.close().await;
    other.close().await;
    let status = tokio::task::spawn_blocking(move || d.terminate(WAIT))
        .await
        .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peer_flood_to_an_identity_without_apps_stops_at_the_daemon_budget() {
    const MESSAGES: usize = 12;
    const BUDGET_MIB: u64 = 6;
    let net = nymd_tests::fast_localnet().await;
    let tmp = tempfile::tempdir().expect("tmp");
    // The flooding peer: an identity of another daemon (its own budget).
    let outside_state = tmp.path().join("outside");
    std::fs::create_dir(&outside_state).expect("dir");
    let outside = TestDaemon::start(&outside_state, &net.api_url(), free_port());
    let (outside_ws, _) = outside.init("flooder").await;

    let mut h = NymdHarness::new(
        tmp.path(),
        &net.api_url(),
        &format!("\n[daemon]\nmemory_budget_mib = {BUDGET_MIB}\n"),
    );
    let d = h.start().await;
    let (bob_ws, bob) = init(&h, "bob", &net.gateways()[0].identity_bs58()).await;
    let pid = d.child.id();
    let rss_before = peak_rss_kib(pid);

    // 12 MiB of 1 MiB messages, nobody connected to bob.
    let batch: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            let mut m = vec![u8::try_from(i).expect("small"); 1 << 20];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            m
        })
        .collect();
    let mut flooder = App::connect(outside_ws).await;
    for m in &batch {
        flooder
            .request_binary(&ClientRequest::Send {
                recipient: bob,
                message: m.clone(),
                connection_id: None,
            })
            .await;
    }
    // Watch nymd while the flood comes in: its use never passes the budget
    // by more than a message per store, and it stops taking more.
    let budget = BUDGET_MIB << 20;
    let slack = 3 << 20;
    let start = Instant::now();
    let mut peak = 0u64;
    let mut last = (0u64, Instant::now());
    loop {
        let st = h.ctl(&["status", "bob"]).await;
        let m = &st["identity"]["memory"];
        let used = m["daemon_bytes"].as_u64().unwrap_or(0);
        assert_eq!(m["daemon_budget"].as_u64(), Some(budget), "{st}");
        assert!(used <= budget + slack, "{used} bytes held: {st}");
        peak = peak.max(used);
        let received = st["identity"]["counters"]["real_packets_received"]
            .as_u64()
            .unwrap_or(0);
        if received != last.0 {
            last = (received, Instant::now());
        } else if received > 0 && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(start.elapsed() < WAIT * 2, "the flood never settled: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = h.ctl(&["status", "bob"]).await;
    let held = st["identity"]["counters"]["inbox_messages"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (held as usize) < MESSAGES,
        "the budget stopped bob before the whole flood: {st}"
    );
    assert!(peak >= budget / 2, "the flood reached the budget: {peak}");
    let rss = peak_rss_kib(pid).saturating_sub(rss_before);
    eprintln!(
        "flood of {MESSAGES} x 1 MiB against a {BUDGET_MIB} MiB budget: nymd held at most {peak} bytes, {held} messages waited in nymd, nymd's peak RSS grew {rss} KiB"
    );

    // An app connects: every message arrives, once (what nymd did not take
    // waited at the gateway).
    let mut app = App::connect(bob_ws).await;
    app.request_binary(&ClientRequest::SelfAddress).await;
    let seen = collect_received(&mut app, MESSAGES, Duration::from_secs(2)).await;
    assert_exactly_once(&seen, &batch, "after the flood");
    app.close().await;
    flooder.close().await;
    let mut d = d;
    let status = tokio::task::spawn_blocking(move || d.terminate(WAIT))
        .await
        .expect("join");
    assert!(status.success(), "nymd exit status {status}");
    outside.stop().await;
    net.shutdown().await;
    let _ = &mut h;
}
