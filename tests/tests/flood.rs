//! An app sending as fast as it can: nymd's identity queue stays bounded
//! (the app server stops reading the app's socket while it is full), every
//! accepted message arrives once, another pair of identities keeps
//! exchanging messages meanwhile, and an app that connects to the receiving
//! identity and never reads is disconnected without holding anything up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nymd_proto::appapi::{ClientRequest, ServerResponse};
use nymd_tests::{free_port, App, TestDaemon};

/// Flood: this many messages of `FLOOD_SIZE` bytes, about 17,000 packets,
/// more than an identity queues (16,384 packets).
const FLOOD_MESSAGES: u32 = 26;
const FLOOD_SIZE: usize = 1 << 20;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn flood_message(i: u32) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; FLOOD_SIZE];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

async fn next_received(app: &mut App) -> Vec<u8> {
    loop {
        match app.next_response().await {
            ServerResponse::Received { message, .. } => return message,
            ServerResponse::Error(e) => panic!("error from nymd: {e:?}"),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_app_gets_backpressure_and_loses_nothing() {
    let net = nymd_tests::fast_localnet().await;
    let state = tempfile::tempdir().expect("tmp");
    let d = Arc::new(TestDaemon::start(state.path(), &net.api_url(), free_port()));
    let (alice_ws, _) = d.init("alice").await;
    let (bob_ws, bob_addr) = d.init("bob").await;
    let (carol_ws, _) = d.init("carol").await;
    let (dave_ws, dave_addr) = d.init("dave").await;
    let mut alice = App::connect(alice_ws).await;
    let mut bob = App::connect(bob_ws).await;
    bob.request_binary(&ClientRequest::SelfAddress).await;
    let _ = bob.next_response().await;
    // A second app on bob's port that never reads.
    let stuck = App::connect(bob_ws).await;

    // Watch alice's queue while she floods.
    let done = Arc::new(AtomicBool::new(false));
    let peak_queue = Arc::new(AtomicU64::new(0));
    let watcher = {
        let d = d.clone();
        let done = done.clone();
        let peak = peak_queue.clone();
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(s) = d.manager.info("alice").ok().and_then(|i| i.stats) {
                    peak.fetch_max(s.queued_packets, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let flood = tokio::spawn(async move {
        for i in 0..FLOOD_MESSAGES {
            alice
                .request_binary(&ClientRequest::Send {
                    recipient: bob_addr,
                    message: flood_message(i),
                    connection_id: None,
                })
                .await;
        }
        alice
    });

    // Meanwhile carol and dave talk.
    let mut carol = App::connect(carol_ws).await;
    let mut dave = App::connect(dave_ws).await;
    dave.request_binary(&ClientRequest::SelfAddress).await;
    let _ = dave.next_response().await;
    for i in 0..10u8 {
        carol
            .request_binary(&ClientRequest::Send {
                recipient: dave_addr,
                message: vec![b'c', i],
                connection_id: None,
            })
            .await;
        assert_eq!(next_received(&mut dave).await, vec![b'c', i]);
    }

    // Bob gets every flood message once.
    let mut seen = vec![0u32; FLOOD_MESSAGES as usize];
    for _ in 0..FLOOD_MESSAGES {
        let m = tokio::time::timeout(Duration::from_secs(240), next_received(&mut bob))
            .await
            .expect("the flood arrives in time");
        assert_eq!(m.len(), FLOOD_SIZE);
        let i = u32::from_be_bytes(m[..4].try_into().expect("index"));
        assert_eq!(m, flood_message(i));
        seen[i as usize] += 1;
    }
    assert!(seen.iter().all(|c| *c == 1), "{seen:?}");
    done.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let alice = flood.await.expect("flood task");
    let peak = peak_queue.load(Ordering::Relaxed);
    let bob_info = d.manager.info("bob").expect("bob");
    eprintln!(
        "flood: {FLOOD_MESSAGES} x {FLOOD_SIZE} bytes; alice's peak queue {peak} packets; \
         bob's apps connected at the end: {}; peak RSS of the test process (localnet, \
         daemon and apps) {} KiB",
        bob_info.connected_apps,
        peak_rss_kib()
    );
    // The identity's queue is bounded (16,384 packets plus one message
    // being split).
    assert!(peak <= 16_384 + 1024, "alice queued {peak} packets");
    // The stuck app was disconnected; bob's reading app kept everything.
    assert_eq!(bob_info.connected_apps, 1, "the stuck app was dropped");

    drop(stuck);
    alice.close().await;
    bob.close().await;
    carol.close().await;
    dave.close().await;
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
    net.shutdown().await;
}
